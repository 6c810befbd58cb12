// The evaluation pass, the only one: forward and loss over a data set on the worker pool, without
// gradients or optimizer state. Training's per-epoch test evaluation and `Classifier` (eval,
// predict) both run it, so `ptrain eval` on the test set gives the last epoch's figures exactly.
import PTData
import PTModel
import PTRuntime
import PTTensor

/// Loss and accuracy of given weights on a data set: the data in chunks of `shards x maxShard`
/// samples, each split into the training shards (shard s of a chunk of n samples: [s*n/S, (s+1)*n/S)),
/// each shard's forward on one worker, the losses added in shard order. With several processes each
/// computes its block of shards and the totals are gathered (every rank calls it at the same point).
/// Holds its workspaces and the per-shard totals: nothing of training.
public final class Evaluator: ParallelJob {
    public let model: Model
    public let pool: WorkerPool
    let parameters: UnsafeMutablePointer<Float>
    /// Running statistics (batch normalisation) the forward uses.
    let state: UnsafeMutablePointer<Float>
    let shards: Int
    let maxShard: Int
    let collectives: Collectives
    let firstShard: Int, endShard: Int
    let rankShardBoundaries: [Int]
    /// workspaces[w] belongs to worker w.
    let workspaces: [Workspace]
    let shardLoss: UnsafeMutablePointer<Double>
    let shardCorrect: UnsafeMutablePointer<Int>
    /// 0, 1, 2, ...: the sample order of data sets up to `identityCount` samples.
    let identity: UnsafeMutablePointer<Int32>
    let identityCount: Int
    /// The chunk being evaluated; set only by `evaluate`.
    private var chunk: Chunk?

    struct Chunk {
        let dataset: Dataset
        let indices: UnsafePointer<Int32>
        let batch: Int
        /// Where each sample's logits go (batch x classes, in sample order), or nil.
        let logits: UnsafeMutablePointer<Float>?
    }

    /// Weights `parameters` and running statistics `state` of `model` (buffers that outlive this),
    /// split as `config` splits training steps (shards, largest shard). `workspaces`: one per
    /// worker of `pool` (the trainer shares its own); nil builds them, each on its worker's thread.
    /// `identityCount`: data sets up to this size are evaluated without allocating an index list.
    init(model: Model, config: TrainConfig, pool: WorkerPool, parameters: UnsafeMutablePointer<Float>,
         state: UnsafeMutablePointer<Float>, collectives: Collectives, workspaces: [Workspace]? = nil, identityCount: Int = 1) {
        self.model = model
        self.pool = pool
        self.parameters = parameters
        self.state = state
        shards = config.shards
        maxShard = config.maxShard
        self.collectives = collectives
        let ranks = collectives.size
        firstShard = collectives.rank * shards / ranks
        endShard = (collectives.rank + 1) * shards / ranks
        rankShardBoundaries = (0...ranks).map { $0 * config.shards / ranks }
        if let workspaces {
            precondition(workspaces.count == pool.workerCount)
            self.workspaces = workspaces
        } else {
            let local = PerWorkerAllocation(model: model, config: config, workers: pool.workerCount, shards: 0)
            pool.run(local)
            self.workspaces = local.workspaceList()
        }
        shardLoss = .allocate(capacity: shards)
        shardLoss.initialize(repeating: 0, count: shards)
        shardCorrect = .allocate(capacity: shards)
        shardCorrect.initialize(repeating: 0, count: shards)
        self.identityCount = max(1, identityCount)
        identity = .allocate(capacity: self.identityCount)
        for i in 0..<self.identityCount { identity[i] = Int32(truncatingIfNeeded: i) }
    }

    deinit {
        shardLoss.deallocate()
        shardCorrect.deallocate()
        identity.deallocate()
    }

    /// Mean loss per sample and fraction correct of the weights on `data`.
    public func evaluate(_ data: Dataset) -> (loss: Double, accuracy: Double) {
        let result = evaluate(data, logits: nil)
        return (result.loss, result.accuracy)
    }

    /// The pass. With `logits`, each sample's logits (data.count x model.classes) are written there too.
    func evaluate(_ data: Dataset, logits: UnsafeMutablePointer<Float>?) -> (loss: Double, accuracy: Double, correct: Int) {
        // Data sets larger than the identity list (eval, predict) get their own.
        let own: [Int32] = data.count > identityCount ? (0..<data.count).map { Int32(truncatingIfNeeded: $0) } : []
        let size = maxShard * shards
        var lossSum = 0.0
        var correct = 0
        own.withUnsafeBufferPointer { ids in
            let indices = own.isEmpty ? UnsafePointer(identity) : ids.baseAddress!
            var start = 0
            while start < data.count {
                chunk = Chunk(dataset: data, indices: indices + start, batch: min(size, data.count - start),
                              logits: logits.map { $0 + start * model.classes })
                pool.run(self)
                let totals = addShardTotals(loss: shardLoss, correct: shardCorrect, shards: shards,
                                            boundaries: rankShardBoundaries, collectives: collectives)
                lossSum += totals.loss
                correct += totals.correct
                start += size
            }
        }
        chunk = nil
        let n = Double(max(1, data.count))
        return (lossSum / n, Double(correct) / n, correct)
    }

    public func run(worker: Int, pool: WorkerPool) {
        let chunk = self.chunk!
        var s = firstShard + worker
        while s < endShard {
            computeShard(s, worker: worker, chunk: chunk)
            s += pool.workerCount
        }
    }

    func computeShard(_ s: Int, worker: Int, chunk: Chunk) {
        let ws = workspaces[worker]
        let range = StepJob.shardRange(s, batch: chunk.batch, shards: shards)
        let n = range.count
        shardLoss[s] = 0
        shardCorrect[s] = 0
        guard n > 0 else { return }
        chunk.dataset.gather(indices: chunk.indices + range.lowerBound, count: n, images: ws.input, labels: ws.labels)
        ws.training = false
        ws.state = state
        ws.shardStats = nil
        ws.noiseSeed = shardNoiseSeed(0, shard: s)
        ws.weightsVersion = nil
        ws.forward(batch: n, parameters: parameters)
        let result = ws.loss(batch: n, gradScale: 1 / Float(chunk.batch), computeGradient: false)
        shardLoss[s] = result.loss
        shardCorrect[s] = result.correct
        if let out = chunk.logits {
            (out + range.lowerBound * model.classes).update(from: ws.logits, count: n * model.classes)
        }
    }
}
