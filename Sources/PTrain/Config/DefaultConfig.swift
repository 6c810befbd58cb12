// The built-in default job: the slides' X/O toy problem. configs/xo.yaml holds the same text
// (a test checks that they agree), so `ptrain` runs from any folder.

/// The default config's YAML (identical to configs/xo.yaml).
public let defaultConfigYAML = """
# The default job: the X/O toy ConvNet from the slides.
# "Says whether a picture is of an X or an O", with translation, scaling, rotation and stroke
# weight varied by the generator; pixels in [-1, 1].
name: xo
data:
  source: xo
  size: 16        # image side in pixels
  train: 8000
  test: 500
model:
  input: {channels: 1, height: 16, width: 16}
  layers:
    - {type: conv, features: 8, size: 3, padding: 1}   # number and size of features
    - {type: relu}
    - {type: maxpool, window: 2, stride: 2}              # pooling window and stride
    - {type: conv, features: 16, size: 3, padding: 1}
    - {type: relu}
    - {type: maxpool, window: 2, stride: 2}
    - {type: flatten}
    - {type: dense, neurons: 32}                         # fully connected: neurons
    - {type: relu}
    - {type: dense, neurons: 2}                          # votes for X and O
optimizer:
  type: sgd
  lr: 0.05
  momentum: 0.9
  weight_decay: 0.0005
schedule:
  type: cosine
training:
  epochs: 8
  batch_size: 32
  shards: 4
  seed: 1

"""
