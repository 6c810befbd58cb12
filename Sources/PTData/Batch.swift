// Minibatch assembly: convert the samples named by an index list into caller-owned buffers, allocating nothing.
import PTTensor

extension Dataset {
    /// Converts samples `indices[0..<count]` into `images` (count x shape.count floats, sample-major)
    /// and copies their labels into `labels` (count values). `converter` (default: the set's own)
    /// must be prepared for this set's element type and shape. Every index must be in 0..<self.count
    /// (not checked in release builds: this runs inside the training step).
    @inline(__always)
    public func gather(indices: UnsafePointer<Int32>, count: Int, images: UnsafeMutablePointer<Float>,
                       labels: UnsafeMutablePointer<Int32>, converter: SampleConverter? = nil) {
        let n = shape.count
        let c = converter ?? self.converter
        assert(c.elementType == store.elementType && c.shape == shape, "Dataset.gather: converter for another store")
        let bytes = store.sampleBytes
        let clipTable = clips
        store.withBase { base in
            self.labels.withUnsafeBufferPointer { allLabels in
                for b in 0..<count {
                    let index = Int(indices[b])
                    assert(index >= 0 && index < self.count, "Dataset.gather: index \(index) outside 0..<\(self.count)")
                    store.willRead(index)
                    if let clipTable {
                        c.convert(base + index * bytes, into: images + b * n, clip: clipTable[index])
                    } else {
                        c.convert(base + index * bytes, into: images + b * n)
                    }
                    labels[b] = allLabels[index]
                }
            }
        }
    }

    /// Converts the consecutive samples `start ..< start + count` (evaluation, prediction).
    public func gather(start: Int, count: Int, images: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>,
                       converter: SampleConverter? = nil) {
        precondition(start >= 0 && count >= 0 && start + count <= self.count, "Dataset.gather: range outside the set")
        let n = shape.count
        for b in 0..<count {
            convert(start + b, into: images + b * n, converter: converter)
            labels[b] = self.labels[start + b]
        }
    }

    /// `gather` for the samples `order[start ..< start + count]` of an epoch order (see `epochPermutation`).
    public func gather(order: [Int32], start: Int, count: Int, images: UnsafeMutablePointer<Float>,
                       labels: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && count >= 0 && start + count <= order.count, "Dataset.gather: range outside the order")
        order.withUnsafeBufferPointer { o in
            guard let base = o.baseAddress else { return }
            gather(indices: base + start, count: count, images: images, labels: labels)
        }
    }
}
