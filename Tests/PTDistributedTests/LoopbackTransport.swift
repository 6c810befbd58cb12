// An in-process PointToPoint for tests: R endpoints in one process (one thread per rank), sends
// copied into mailboxes, receives matched by (source, tag) in posting order, as MPI does.
import Foundation
import PTDistributed

final class LoopbackGroup: @unchecked Sendable {
    struct Message { var values: [Float]; var from: Int; var tag: Int32 }
    struct Pending { var values: UnsafeMutablePointer<Float>; var count: Int; var from: Int; var tag: Int32; var slot: Int }
    let size: Int
    let lock = NSLock()
    var mailboxes: [[Message]]
    var pending: [[Pending]]
    var done: [[Bool]]

    init(size: Int) {
        self.size = size
        mailboxes = Array(repeating: [], count: size)
        pending = Array(repeating: [], count: size)
        done = Array(repeating: [], count: size)
    }

    func endpoint(_ rank: Int) -> LoopbackTransport { LoopbackTransport(group: self, rank: rank) }
}

final class LoopbackTransport: PointToPoint {
    let group: LoopbackGroup
    let rank: Int
    var size: Int { group.size }
    /// Sends posted, by destination (to check the byte count independently of the exchange).
    var floatsPosted = 0
    /// The largest message posted.
    var largestPosted = 0

    init(group: LoopbackGroup, rank: Int) { self.group = group; self.rank = rank }

    func reserve(slots count: Int, largest: Int) {
        group.lock.lock(); defer { group.lock.unlock() }
        group.done[rank] = Array(repeating: true, count: count)
    }

    func startSend(_ values: UnsafePointer<Float>, count: Int, to: Int, tag: Int32, slot: Int) {
        precondition(to != rank && to >= 0 && to < size)
        floatsPosted += count
        largestPosted = max(largestPosted, count)
        let data = Array(UnsafeBufferPointer(start: values, count: count))
        group.lock.lock(); defer { group.lock.unlock() }
        if let i = group.pending[to].firstIndex(where: { $0.from == rank && $0.tag == tag }) {
            let p = group.pending[to].remove(at: i)
            precondition(p.count == count, "message of \(count) floats for a receive of \(p.count)")
            data.withUnsafeBufferPointer { p.values.update(from: $0.baseAddress!, count: count) }
            group.done[to][p.slot] = true
        } else {
            group.mailboxes[to].append(.init(values: data, from: rank, tag: tag))
        }
        group.done[rank][slot] = true   // buffered: the send buffer is free at once
    }

    func startReceive(_ values: UnsafeMutablePointer<Float>, count: Int, from: Int, tag: Int32, slot: Int) {
        group.lock.lock(); defer { group.lock.unlock() }
        if let i = group.mailboxes[rank].firstIndex(where: { $0.from == from && $0.tag == tag }) {
            let m = group.mailboxes[rank].remove(at: i)
            precondition(m.values.count == count, "message of \(m.values.count) floats for a receive of \(count)")
            m.values.withUnsafeBufferPointer { values.update(from: $0.baseAddress!, count: count) }
            group.done[rank][slot] = true
        } else {
            group.done[rank][slot] = false
            group.pending[rank].append(.init(values: values, count: count, from: from, tag: tag, slot: slot))
        }
    }

    func test(_ slots: Range<Int>) -> Bool {
        group.lock.lock(); defer { group.lock.unlock() }
        return slots.allSatisfy { group.done[rank][$0] }
    }

    func wait(_ slots: Range<Int>) {
        while !test(slots) { usleep(50) }
    }
}
