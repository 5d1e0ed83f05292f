#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import LevainAPI
import LevainCLI
import LevainMCP
import MCP

/// `levain mcp`: Levain as an MCP server over stdio, for MCP clients on the
/// host (Claude Code, Cursor, an agent's own MCP client).
struct MCPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve Levain's sessions as MCP tools over stdio (for Claude Code, Cursor, any MCP client).",
        discussion: """
        Speaks the Model Context Protocol on stdin/stdout (JSON-RPC, one
        message per line) and turns each tool call into a call of the control
        API of the supervisor that --connect, LEVAIN_CONNECT or the default
        socket (/run/levain/levain.sock) names, with LEVAIN_TOKEN as the bearer
        token over TCP. What a client may do is what those credentials allow.

        Tools: create_session, list_sessions, close_session, pause_session,
        resume_session, exec (output streamed as progress notifications),
        start_process, poll_process, write_stdin, signal_process,
        cancel_process, read_file, write_file, list_files, stat_file. A call
        that fails (a closed session, a path outside the jail) is a tool
        result with isError and the API's message.

        The same tools are served by `levain serve` over streamable HTTP at
        /mcp (docs/MCP.md).

        Examples:
          claude mcp add levain -- levain mcp
          levain --connect tcp:10.0.0.5:8787 mcp     (LEVAIN_TOKEN set)
        """
    )

    func run() throws {
        let client = try Connection.required()
        try blocking {
            let control = ControlServer(client: client)
            let server = await control.makeServer(version: LevainVersion.string)
            try await server.start(transport: StdioTransport())
            await server.waitUntilCompleted()
            await control.shutdown()
        }
    }
}
