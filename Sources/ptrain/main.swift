print("ptrain")
