// levain-log-bench: durable session-log appends per second.
//
//   levain-log-bench [--dir DIR] [--events N] [--writers 1,16,64,256] [--rounds R] [--warm-up yes|no]
//
// Each round measures the reference (a 4 KiB overwrite + fdatasync), then
// runs every writer count once, interleaved, each on a fresh log file in DIR
// (default: a temporary directory under /tmp, removed afterwards), and prints
// events/s, the transactions (fsyncs) used and the mean batch size. With
// --warm-up yes (the default) the same number of events is appended first,
// untimed, so the WAL has its working size (see LogBenchmark).
// `make bench` runs it (benchmarks/README.md).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LevainClock
import LevainSessionLog

var directory: String?
var events = 20_000
var writerCounts = [1, 16, 64, 256]
var rounds = 3
var warmUp = true
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { fatalError("\(flag) needs a value") }
    switch flag {
    case "--dir": directory = value
    case "--events": events = Int(value) ?? events
    case "--writers": writerCounts = value.split(separator: ",").compactMap { Int($0) }
    case "--rounds": rounds = Int(value) ?? rounds
    case "--warm-up": warmUp = value != "no"
    default: fatalError("unknown option \(flag)")
    }
}

let base: String
if let directory {
    base = directory
} else {
    var template = Array("/tmp/levain-log-bench-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { fatalError("mkdtemp failed") }
    base = String(cString: made)
}

func fixed(_ x: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int((x * scale).rounded())
    let whole = n / Int(scale), frac = n % Int(scale)
    let f = String(frac)
    return digits == 0 ? String(whole) : "\(whole)." + String(repeating: "0", count: digits - f.count) + f
}

func remove(_ path: String) {
    for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
}

/// The reference: overwrite one 4 KiB block and fdatasync it, as a WAL
/// commit does at best. A single sequential writer cannot beat 1/latency.
func fsyncLatency(_ path: String, count: Int = 300) -> Double {
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { fatalError("cannot create \(path)") }
    defer { close(fd); unlink(path) }
    let block = [UInt8](repeating: 0x2A, count: 4096)
    _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, 0) }
    _ = fsync(fd)
    let start = Monotonic.seconds()
    for _ in 0..<count {
        _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, 0) }
        _ = fdatasync(fd)
    }
    return (Monotonic.seconds() - start) / Double(count)
}

var rates: [Int: [Double]] = [:]
var fsyncs: [Double] = []
for round in 1...rounds {
    let latency = fsyncLatency("\(base)/fsync-reference")
    fsyncs.append(latency)
    print("round \(round)  reference: 4 KiB pwrite+fdatasync \(fixed(latency * 1e3, 3)) ms (\(Int(1 / latency))/s)")
    for writers in writerCounts {
        // The single writer is fsync-bound: fewer events keep the run short.
        let perWriter = writers == 1 ? min(events, 3000) : max(1, events / writers)
        let path = "\(base)/bench-\(round)-\(writers).sqlite"
        let result = try await LogBenchmark.durableAppends(path: path, writers: writers, eventsPerWriter: perWriter,
                                                           warmUpEventsPerWriter: warmUp ? perWriter : 0)
        remove(path)
        let rate = Double(result.events) / result.seconds
        rates[writers, default: []].append(rate)
        let line = "round \(round)  writers \(writers)  events \(result.events)  "
            + "seconds \(fixed(result.seconds, 3))  events/s \(Int(rate))  "
            + "transactions \(result.transactions)  events/tx \(fixed(Double(result.events) / Double(max(1, result.transactions)), 1))"
        print(line)
    }
}
let fsyncMedian = fsyncs.sorted()[fsyncs.count / 2]
print("median fdatasync: \(fixed(fsyncMedian * 1e3, 3)) ms")
print("median events/s (and events per fdatasync time):")
for writers in writerCounts {
    let sorted = rates[writers, default: []].sorted()
    let median = sorted[sorted.count / 2]
    print("  \(writers) writers: \(Int(median))  (\(fixed(median * fsyncMedian, 2)))")
}
if directory == nil { rmdir(base) }
