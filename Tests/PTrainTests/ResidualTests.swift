// Residual graphs in configs and training: blocks, references and their errors; ResNet-20 gives
// the same bits for any thread count (and across MPI ranks); resuming a residual, augmented run
// in the middle is bit-identical to the uninterrupted run.
import XCTest
import PTData
import PTModel
import PTRuntime
import PTTensor
import PTrain

final class ResidualTests: XCTestCase {
    static let root = TestSupport.repositoryRoot

    func resnet20() throws -> TrainConfig {
        try TrainConfig.load(path: Self.root.appendingPathComponent("configs/resnet20-cifar.yaml").path)
    }

    func testResNet20ConfigIsHeEtAlsNetwork() throws {
        let config = try resnet20()
        let model = try Model(input: Shape(channels: 3, height: 32, width: 32), layers: config.layers, maxBatch: 1)
        // 19 convolutions on the main path + the dense layer = 20 weighted layers; 2 projections.
        let convs = model.layers.compactMap { $0 as? Conv2D }
        XCTAssertEqual(convs.filter { !$0.name.contains("shortcut") }.count, 19)
        XCTAssertEqual(convs.filter { $0.name.contains("shortcut") }.map(\.geometry.kh), [1, 1])
        XCTAssertEqual(model.layers.filter { $0 is Add }.count, 9)
        XCTAssertEqual(Double(model.trainableCount), 0.27e6, accuracy: 0.01e6)
        XCTAssertEqual(model.layers.last!.name, "linear")
        let names = Set(model.parameterTensors.map(\.name) + model.stateTensors.map(\.name))
        for name in ["conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.2.bn2.bias", "layer2.0.shortcut.0.weight",
                     "layer3.0.shortcut.1.running_mean", "layer3.2.conv2.weight", "linear.weight"] {
            XCTAssertTrue(names.contains(name), "missing \(name)")
        }
        // Identity shortcuts in the first stage and after the first block of each stage.
        let add = model.layers.firstIndex { $0.name == "layer2.1.add1" }!
        XCTAssertEqual(model.inputNames(add), ["layer2.1.bn2", "layer2.0.relu2"])
        let projection = model.layers.firstIndex { $0.name == "layer3.0.shortcut.0" }!
        XCTAssertEqual(model.inputNames(projection), ["layer2.2.relu2"])
        XCTAssertEqual(config.augment, Augmentation(crop: 4, flip: true))
        // The resolved YAML (blocks expanded) reads back to the same config.
        XCTAssertEqual(try TrainConfig.parse(yaml: config.yaml, file: "resolved"), config)
    }

    func parse(_ layers: String, blocks: String = "") throws -> TrainConfig {
        try TrainConfig.parse(yaml: "model:\n  input: {channels: 2, height: 8, width: 8}\n" + blocks + "  layers:\n" + layers, file: "g.yaml")
    }

    func model(_ c: TrainConfig) throws -> Model { try Model(input: c.input!, layers: c.layers, maxBatch: 2) }

    func testReferencesByNameAndRelativeIndexAcrossBlocks() throws {
        let blocks = """
              blocks:
                twice:
                  params: {f: 4, extra: false}
                  layers:
                    - {type: conv, features: $f, size: 3, padding: 1, name: a}
                    - {type: relu, if: $extra, name: r}
                    - {type: conv, features: $f, size: 1, from: [input], if: $extra, name: p}
                    - {type: concat, from: [r, p]}

            """
        let c = try parse("""
                - {type: conv, features: 3, size: 1, name: stem}
                - {block: twice, name: t, repeat: 2, first: {extra: true}}
                - {type: add, from: [-1, t]}
                - {type: conv, features: 12, size: 1, from: -2}
                - {type: add, from: [add1, -1]}
                - gap
                - {type: dense, neurons: 2}

            """, blocks: blocks)
        let m = try model(c)
        XCTAssertEqual(m.layers.map(\.name), ["stem", "t.0.a", "t.0.r", "t.0.p", "t.0.concat1", "t.1.a", "t.1.concat1",
                                              "add1", "conv1", "add2", "gap1", "dense1"])
        // Copy 1 leaves out r and p: its concat joins a with a's input (copy 0's output, 8 channels).
        XCTAssertEqual(m.inputNames(6), ["t.1.a", "t.0.concat1"])
        XCTAssertEqual(m.layers[6].outputShape, Shape(channels: 12, height: 8, width: 8))
        XCTAssertEqual(m.inputNames(7), ["t.1.concat1", "t.1.concat1"])
        XCTAssertEqual(m.inputNames(8), ["t.1.concat1"])   // -2 counts the block as one entry
        XCTAssertEqual(m.inputNames(9), ["add1", "conv1"])
        XCTAssertEqual(try TrainConfig.parse(yaml: c.yaml, file: "resolved"), c)
    }

    func expectError(_ layers: String, blocks: String = "", _ expected: String, line: UInt = #line) {
        XCTAssertThrowsError(try model(parse(layers, blocks: blocks)), line: line) { error in
            let text = "\(error)"
            XCTAssertFalse(text.contains("\n"), text, line: line)
            XCTAssertTrue(text.contains(expected), "expected '\(expected)' in: \(text)", line: line)
        }
    }

    func testGraphErrorsNameTheLayerAndLine() {
        expectError("    - {type: conv, features: 3, size: 3}\n    - {type: add, from: [-1, input]}\n",
                    "g.yaml:5: layer 2 (add1): add needs inputs of one shape: conv1 gives 3x6x6, input gives 2x8x8")
        expectError("    - {type: conv, features: 3, size: 3, from: later}\n    - {type: relu, name: later}\n",
                    "g.yaml:4: layer 1 (conv1): from 'later': forward reference to layer 2")
        expectError("    - {type: conv, features: 3, size: 3, from: ghost}\n", "g.yaml:4: layer 1 (conv1): from 'ghost': no layer has that name")
        expectError("    - {type: relu, name: me, from: me}\n", "layer 1 (me): from 'me': a layer cannot take its own output (cycle)")
        expectError("    - {type: relu, from: 2}\n", "g.yaml:4: model.layers[1].from: 2 is a forward reference")
        expectError("    - {type: relu, from: 0}\n", "model.layers[1].from: 0 would be the layer itself (a cycle)")
        expectError("    - relu\n    - {type: relu, from: -3}\n", "g.yaml:5: model.layers[2].from: -3 reaches before the model input")
        expectError("    - relu\n    - {type: add, from: -1}\n", "layer 2 (add1): add needs at least two inputs")
        expectError("    - relu\n    - {type: concat}\n", "model.layers[2]: concat needs 'from'")
        expectError("    - {type: relu, name: '3x'}\n", "model.layers[1].name: '3x' is not a layer name")
        let blocks = "  blocks:\n    b:\n      params: {f: 2}\n      layers:\n        - {type: conv, features: $f, size: 3, padding: 1, from: -2}\n"
        expectError("    - {block: b}\n", blocks: blocks, "g.yaml:7: model.blocks.b.layers[1].from: -2 reaches outside the block")
        expectError("    - {block: b, g: 3}\n", blocks: blocks, "unknown key 'model.layers[1].g' (known here: block, name, repeat, first, from, f)")
        expectError("    - {block: c}\n", blocks: blocks, "model.layers[1].block: unknown block 'c' (defined: b)")
        expectError("    - {block: b, repeat: 0}\n", blocks: blocks, "model.layers[1].repeat: must be in 1...1000, got 0")
        let bad = "  blocks:\n    b:\n      layers:\n        - {type: conv, features: $g, size: 3}\n"
        expectError("    - {block: b}\n", blocks: bad, "g.yaml:6: model.blocks.b.layers[1]: unknown parameter '$g'")
        expectError("    - {block: {x: 1}}\n", blocks: blocks, "g.yaml:9: model.layers[1].block: expected a block name")
        let many = "  blocks:\n    b:\n      layers: [relu, relu, relu, relu, relu, relu, relu, relu, relu, relu, relu]\n"
        expectError("    - {block: b, repeat: 1000}\n", blocks: many, "the model would have more than 10000 layers")
        expectError("    - {type: add, from: [-1, b1]}\n    - {block: b, name: b1}\n", blocks: blocks,
                    "model.layers[1].from: 'b1' is a forward reference to entry 2")
    }

    // MARK: - Training

    /// CIFAR-shaped random data: `count` samples of 3x32x32, labels 0..9.
    func synthetic(_ count: Int, seed: UInt64, shape: Shape = Shape(channels: 3, height: 32, width: 32)) -> Dataset {
        var rng = Xoshiro256(seed: seed)
        let images = AlignedBuffer(count: count * shape.count)
        for i in 0..<images.count { images[i] = rng.nextUnitFloat() * 2 - 1 }
        return Dataset(name: "synthetic", shape: shape, classes: 10, images: images, labels: (0..<count).map { Int32($0 % 10) })
    }

    /// ResNet-20 with crop and flip, batch 16 in 4 shards, 2 steps: the same weights, running
    /// statistics and losses with 1, 2 and 3 workers.
    func testResNet20SameBitsForOneToThreeThreads() throws {
        var config = try resnet20()
        config.epochs = 1
        config.batchSize = 16
        config.shards = 4
        config.learningRate = 0.05
        let train = synthetic(32, seed: 1), test = synthetic(8, seed: 2)
        func run(_ workers: Int) throws -> (weights: [Float], records: [EpochRecord]) {
            let trainer = try Trainer(config: config, train: train, test: test, pool: try WorkerPool(workers: workers))
            XCTAssertEqual(trainer.stepsPerEpoch, 2)
            while !trainer.isFinished { _ = try trainer.step() }
            return (trainer.parameters.array + trainer.state.array, trainer.progress.records)
        }
        let reference = try run(1)
        let initial = try Trainer(config: config, train: train, test: test, pool: try WorkerPool(workers: 1)).parameters.array
        XCTAssertNotEqual(Array(reference.weights.prefix(initial.count)), initial, "the weights should change")
        for workers in [2, 3] {
            let other = try run(workers)
            XCTAssertEqual(other.weights, reference.weights, "weights differ with \(workers) workers")
            XCTAssertEqual(other.records.map(\.trainLoss), reference.records.map(\.trainLoss))
            XCTAssertEqual(other.records.map(\.testLoss), reference.records.map(\.testLoss))
        }
    }

    /// Writes a small residual, augmented job on 3x8x8 .npy data into `dir`; returns the config path.
    static func residualJob(_ dir: URL, epochs: Int = 2, shards: Int = 4) throws -> String {
        func npy(_ descr: String, _ shape: [Int], _ bytes: [UInt8]) -> Data {
            let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
            var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
            while (10 + dict.utf8.count + 1) % 64 != 0 { dict += " " }
            dict += "\n"
            let n = dict.utf8.count
            return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 255), UInt8(n >> 8)] + Array(dict.utf8) + bytes)
        }
        var rng = Xoshiro256(seed: 5)
        for (name, count) in [("train", 96), ("test", 24)] {
            let labels = (0..<count).map { Int32($0 % 3) }
            // Class k: a bright k-th third of the picture, plus noise.
            var images = [Float]()
            for n in 0..<count {
                for _ in 0..<3 { for y in 0..<8 { for _ in 0..<8 { images.append((y / 3 == Int(labels[n]) ? 1 : 0) + rng.nextUnitFloat() - 0.5) } } }
            }
            try npy("<f4", [count, 3, 8, 8], images.withUnsafeBytes { Array($0) }).write(to: dir.appendingPathComponent("\(name)_images.npy"))
            try npy("<i4", [count], labels.withUnsafeBytes { Array($0) }).write(to: dir.appendingPathComponent("\(name)_labels.npy"))
        }
        let yaml = """
            name: residual-test
            data: {source: npy, path: '\(dir.path)'}
            augment: {crop: 1, flip: true}
            model:
              input: {channels: 3, height: 8, width: 8}
              blocks:
                basic:
                  params: {features: 8, stride: 1, project: false}
                  layers:
                    - {name: conv1, type: conv, features: $features, size: 3, stride: $stride, padding: 1}
                    - {name: bn1, type: batchnorm}
                    - relu
                    - {name: conv2, type: conv, features: $features, size: 3, padding: 1}
                    - {name: bn2, type: batchnorm}
                    - {name: shortcut.0, type: conv, from: input, features: $features, size: 1, stride: $stride, if: $project}
                    - {name: shortcut.1, type: batchnorm, if: $project}
                    - {type: add, from: [bn2, shortcut.1]}
                    - relu
              layers:
                - {type: conv, features: 8, size: 3, padding: 1}
                - batchnorm
                - relu
                - {block: basic, name: layer1, repeat: 2}
                - {block: basic, name: layer2, features: 16, stride: 2, project: true}
                - gap
                - {type: dense, neurons: 3}
            optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0005}
            schedule: {type: cosine}
            training: {epochs: \(epochs), batch_size: 16, shards: \(shards), seed: 3}

            """
        let path = dir.appendingPathComponent("residual.yaml")
        try Data(yaml.utf8).write(to: path)
        return path.path
    }

    func weights(_ runFolder: URL) throws -> Data { try Data(contentsOf: runFolder.appendingPathComponent("model.safetensors")) }

    /// Checkpoints after every step of a residual, augmented run; resuming at a step inside the
    /// first and inside the second epoch, with 1 or 3 threads, ends with the same weights (running
    /// statistics included) and the same metrics.
    func testResumeInTheMiddleOfAResidualAugmentedRun() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try Self.residualJob(dir)
        let full = dir.appendingPathComponent("full")
        let run = try TestSupport.ptrain(["train", "--config", config, "--output", full.path, "--threads", "2",
                                          "--checkpoint-every", "1", "--keep-checkpoints", "0", "-q"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let reference = try weights(full)
        let referenceMetrics = try String(contentsOf: full.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        func epochLines(_ text: String) -> [String] {
            text.split(separator: "\n").filter { $0.contains("\"event\":\"epoch\"") }
                .map { String($0.replacingOccurrences(of: #","images_per_sec":[^,]*,"seconds":[^}]*"#, with: "", options: .regularExpression)) }
        }
        XCTAssertEqual(epochLines(referenceMetrics).count, 2)
        for (step, threads) in [(3, 1), (8, 3)] {
            let out = dir.appendingPathComponent("resume-\(step)")
            let checkpoint = full.appendingPathComponent("checkpoints/" + Checkpoint.folderName(step: step))
            let resumed = try TestSupport.ptrain(["train", "--resume", checkpoint.path, "--output", out.path, "--threads", String(threads), "-q"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertEqual(try weights(out), reference, "weights differ after resuming at step \(step) with \(threads) threads")
            XCTAssertEqual(epochLines(try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)),
                           epochLines(referenceMetrics))
        }
        // The augmentation matters: without it the weights differ.
        let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "augment: {crop: 1, flip: true}\n", with: "")
        try Data(text.utf8).write(to: URL(fileURLWithPath: config))
        let plain = dir.appendingPathComponent("plain")
        XCTAssertEqual(try TestSupport.ptrain(["train", "--config", config, "--output", plain.path, "--threads", "2", "-q"]).status, 0)
        XCTAssertNotEqual(try weights(plain), reference)
    }

    /// Augmentation pads with what an empty (zero) raw value becomes after the config's
    /// preprocessing, as `Preprocessing` itself computes it.
    func testAugmentationPadsWithThePreprocessedEmptyValue() throws {
        for (mean, std, z) in [(Float(0.1307), Float(0.3081), false), (0.5, 0.25, false), (nil, nil, false), (nil, nil, true)] as [(Float?, Float?, Bool)] {
            var data = TrainConfig().data
            data.mean = mean
            data.std = std
            data.zNormalize = z
            let preprocessing = Preprocessing(data)
            let augment = preprocessing.augmentation(Augmentation(crop: 2, flip: true))
            XCTAssertEqual(augment.crop, 2)
            XCTAssertTrue(augment.flip)
            // A zero raw pixel next to a non-zero one (so z_normalize has a spread), preprocessed.
            let pixels = AlignedBuffer([0, 1])
            try preprocessing.apply(pixels.pointer, count: 1, shape: Shape(channels: 1, height: 1, width: 2))
            let empty = z ? 0 : pixels.pointer[0]   // standardised: the sample's mean
            XCTAssertEqual(augment.fill, empty, "mean \(String(describing: mean)), std \(String(describing: std)), z_normalize \(z)")
            XCTAssertEqual(preprocessing.emptyValue, empty)
        }
    }

    /// ResNet-20 (2 steps) across processes: `mpirun -np 2 --threads 1` (the sharded exchange, in
    /// small buckets) gives the weights of one process with 2 threads. Needs PTRAIN_MPI_BINARY and mpirun (as MPITests).
    func testResNet20AcrossTwoRanks() throws {
        let launcher = try MPILauncher.find()
        let dir = TestSupport.temporaryDirectory()
        // 3x32x32 .npy data for ResNet-20: 32 training samples (2 steps of 16), 8 test samples.
        var config = try resnet20()
        config.data.source = .npy
        config.data.mean = nil
        config.data.std = nil
        config.data.path = dir.path
        config.epochs = 1
        config.batchSize = 16
        config.shards = 4
        // The sharded exchange (the default with several ranks) runs backward bucket by bucket:
        // 16 KiB buckets put bucket boundaries inside the residual blocks.
        config.bucketKB = 16
        for (name, set) in [("train", synthetic(32, seed: 1)), ("test", synthetic(8, seed: 2))] {
            try writeNPY(set, images: dir.appendingPathComponent("\(name)_images.npy"), labels: dir.appendingPathComponent("\(name)_labels.npy"))
        }
        let configPath = dir.appendingPathComponent("resnet20.yaml")
        try Data(config.yaml.utf8).write(to: configPath)
        let single = dir.appendingPathComponent("single"), ranks = dir.appendingPathComponent("ranks")
        let a = try TestSupport.run(launcher.binary, ["train", "--config", configPath.path, "--threads", "2", "--output", single.path, "-q"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try launcher.run(["-np", "2"], ["train", "--config", configPath.path, "--threads", "1", "--output", ranks.path, "-q"])
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertEqual(try weights(ranks), try weights(single), "ResNet-20 weights differ across 2 ranks")
    }

    func writeNPY(_ set: Dataset, images: URL, labels: URL) throws {
        func npy(_ descr: String, _ shape: [Int], _ bytes: [UInt8]) -> Data {
            var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (" + shape.map(String.init).joined(separator: ", ")
                + (shape.count == 1 ? ",), }" : "), }")
            while (10 + dict.utf8.count + 1) % 64 != 0 { dict += " " }
            dict += "\n"
            let n = dict.utf8.count
            return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 255), UInt8(n >> 8)] + Array(dict.utf8) + bytes)
        }
        let s = set.shape
        try npy("<f4", [set.count, s.channels, s.height, s.width], set.converted().array.withUnsafeBytes { Array($0) }).write(to: images)
        try npy("<i4", [set.count], set.labels.withUnsafeBytes { Array($0) }).write(to: labels)
    }
}
