// Serving a gRPC server until SIGINT or SIGTERM, shared by the long-running
// subcommands (server, cluster, worker).
#pragma once

namespace tandem::server {
class GrpcServer;
}  // namespace tandem::server

namespace tandem::cli {

/// Installs SIGINT/SIGTERM handlers, blocks until one arrives (or the server
/// is shut down otherwise), then shuts the server down gracefully. Returns the
/// exit code (0). `name` prefixes the log lines.
int serve_until_stopped(server::GrpcServer& server, const char* name);

}  // namespace tandem::cli
