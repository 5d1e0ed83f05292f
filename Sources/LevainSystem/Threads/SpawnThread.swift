#if canImport(Glibc)
import Glibc
#endif

/// A thread that lives as long as the supervisor and makes every jail.
///
/// A jail's die-with-parent signal fires when the *thread* that cloned it
/// exits, not the process; Swift's concurrency pool may retire its threads.
/// So every spawn runs here, on a pthread that never ends.
public final class SpawnThread: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var jobs: [() -> Void] = []
    private var thread = pthread_t()

    public init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
        let box = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { arg in
            let me = Unmanaged<SpawnThread>.fromOpaque(arg!).takeRetainedValue()
            me.loop()
            return nil
        }, box.toOpaque())
    }

    private func loop() -> Never {
        while true {
            pthread_mutex_lock(&mutex)
            while jobs.isEmpty { pthread_cond_wait(&cond, &mutex) }
            let job = jobs.removeFirst()
            pthread_mutex_unlock(&mutex)
            job()
        }
    }

    /// Runs `body` on the spawn thread and returns its result.
    public func run<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { continuation in
            pthread_mutex_lock(&mutex)
            jobs.append {
                do throws(E) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            pthread_cond_signal(&cond)
            pthread_mutex_unlock(&mutex)
        }
        return try result.get()
    }
}
