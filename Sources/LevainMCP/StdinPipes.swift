import LevainAPI

/// The stdin of processes started with `stdin: true`: for each, one
/// streaming upload (`PUT /v1/runs/{id}/stdin`, chunked) that the server
/// holds open and feeds with what `write_stdin` gives it, in order. Bounded:
/// at most `maxStdinPipes` open, at most `maxStdinBacklog` bytes waiting in
/// one (a process that does not read its stdin makes `write_stdin` fail, not
/// the server grow). A pipe ends with its run: a watcher waits for the
/// run's end and closes it, so a process nobody writes to again does not
/// keep its slot.
actor StdinPipes {
    private var pipes: [String: (pipe: Pipe, upload: Task<Result<APIClient.Reply, ToolFailure>, Never>)] = [:]
    /// Slots taken by start_process calls whose run is being submitted.
    private var reserved = 0

    /// Takes a slot before the run is submitted (so that a run with
    /// stdin_stream is never made without a pipe to feed it); false when
    /// all are taken.
    func reserve() -> Bool {
        guard pipes.count + reserved < ControlLimits.maxStdinPipes else { return false }
        reserved += 1
        return true
    }

    func release() { reserved = max(0, reserved - 1) }

    /// Starts the upload on a reserved slot; it waits in the supervisor
    /// until the process runs.
    func open(run: String, client: APIClient) {
        reserved = max(0, reserved - 1)
        guard pipes[run] == nil else { return }
        let pipe = Pipe()
        let upload = Task { () -> Result<APIClient.Reply, ToolFailure> in
            let result: Result<APIClient.Reply, ToolFailure>
            do {
                let reply = try await client.upload("PUT", "/v1/runs/\(run)/stdin", next: { await pipe.next() })
                result = (200..<300).contains(reply.status) ? .success(reply) : .failure(ToolFailure(Self.describe(reply)))
            } catch {
                result = .failure(ToolFailure("the stdin upload failed: \(error)"))
            }
            await pipe.finish(result)
            return result
        }
        pipes[run] = (pipe, upload)
        // The run's end closes the pipe (the upload then ends too).
        Task {
            _ = try? await client.request("POST", "/v1/runs/\(run)/wait")
            await self.forget(run: run)
        }
    }

    /// Queues `bytes` (and the end, with `eof`); with `eof`, waits for the
    /// upload's answer and returns the bytes the process got in all.
    func write(run: String, _ bytes: [UInt8], eof: Bool) async throws(ToolFailure) -> Int {
        guard let (pipe, upload) = pipes[run] else {
            throw ToolFailure("write_stdin: run \(run) has no open stdin here (start it with start_process and stdin: true; a closed stdin stays closed)")
        }
        // One hop to the pipe (which refuses when its upload has failed):
        // two writes to one run arrive in the order they were made.
        do throws(ToolFailure) {
            try await pipe.push(bytes, eof: eof)
        } catch {
            pipes[run] = nil
            throw error
        }
        guard eof else { return 0 }
        pipes[run] = nil
        switch await upload.value {
        case .success(let reply):
            let json = try? ControlServer.check(reply)
            return Int(json?["bytes"]?.intValue ?? 0)
        case .failure(let e):
            throw e
        }
    }

    func forget(run: String) async {
        guard let (pipe, _) = pipes.removeValue(forKey: run) else { return }
        try? await pipe.push([], eof: true)
    }

    func closeAll() async {
        for run in Array(pipes.keys) { await forget(run: run) }
    }

    nonisolated static func describe(_ reply: APIClient.Reply) -> String {
        do throws(ToolFailure) { _ = try ControlServer.check(reply); return "the stdin upload ended" } catch { return error.message }
    }
}

/// One upload's queue: chunks in order, then the end (nil).
private actor Pipe {
    private var queue: [[UInt8]?] = []
    private var backlog = 0
    private var waiter: CheckedContinuation<[UInt8]?, Never>?
    private var ended = false
    /// How the upload ended, once it has.
    private(set) var outcome: Result<APIClient.Reply, ToolFailure>?

    func push(_ bytes: [UInt8], eof: Bool) throws(ToolFailure) {
        if case .failure(let e)? = outcome { throw e }
        guard !ended else { throw ToolFailure("write_stdin: stdin is closed") }
        guard backlog + bytes.count <= ControlLimits.maxStdinBacklog else {
            throw ToolFailure("write_stdin: \(backlog) bytes are still waiting for the process to read them; try again later")
        }
        if !bytes.isEmpty { deliver(bytes) }
        if eof { ended = true; deliver(nil) }
    }

    private func deliver(_ chunk: [UInt8]?) {
        if let waiter {
            self.waiter = nil
            waiter.resume(returning: chunk)
        } else {
            queue.append(chunk)
            backlog += chunk?.count ?? 0
        }
    }

    func next() async -> [UInt8]? {
        if !queue.isEmpty {
            let chunk = queue.removeFirst()
            backlog -= chunk?.count ?? 0
            return chunk
        }
        return await withCheckedContinuation { waiter = $0 }
    }

    func finish(_ result: Result<APIClient.Reply, ToolFailure>) {
        outcome = result
        ended = true
        queue = []
        backlog = 0
    }

    /// The upload's failure, if it has ended with one (the run ended, the
    /// stdin was claimed elsewhere).
    var failure: ToolFailure? {
        if case .failure(let e)? = outcome { return e }
        return nil
    }
}
