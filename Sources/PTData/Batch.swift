// Minibatch assembly: copy the samples named by an index list into caller-owned buffers, allocating nothing.
import PTTensor

extension Dataset {
    /// Copies samples `indices[0..<count]` into `images` (count x shape.count floats, sample-major) and
    /// their labels into `labels` (count values). Every index must be in 0..<self.count (not checked in
    /// release builds: this runs inside the training step).
    public func gather(indices: UnsafePointer<Int32>, count: Int, images: UnsafeMutablePointer<Float>,
                       labels: UnsafeMutablePointer<Int32>) {
        let n = shape.count
        let source = self.images.pointer
        self.labels.withUnsafeBufferPointer { allLabels in
            for b in 0..<count {
                let index = Int(indices[b])
                assert(index >= 0 && index < self.count, "Dataset.gather: index \(index) outside 0..<\(self.count)")
                (images + b * n).update(from: source + index * n, count: n)
                labels[b] = allLabels[index]
            }
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
