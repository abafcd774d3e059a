/**
 * The root of qmigrate's error tree. Every error the package throws is a QmigrateError with a
 * stable `code` (for programs) and an optional `cause` (for people). The whole tree, with the
 * module of each subtree and the codes each class is thrown with (test/errors-tree.test.ts
 * holds it to the classes and to the codes the sources pass):
 *
 *   QmigrateError                errors.ts            SOCKET_TIGHT_UNSUPPORTED (util/abstract-unix.ts)
 *    +-- ArgumentError           errors.ts            INVALID_ARGUMENT
 *    +-- InternalError           errors.ts            INTERNAL
 *    +-- SocketError             util/sockets.ts      SOCKET_ADDRESS, SOCKET_RESOLVE, SOCKET_CONNECT,
 *    |                                                SOCKET_BIND, SOCKET_LISTEN
 *    +-- QapiError               qapi/errors.ts       QAPI_<class> (QAPI_GenericError, ...)
 *    +-- JsonSyntaxError         qapi/json.ts         JSON_SYNTAX
 *    +-- QmpClientError          qmp/errors.ts
 *    |    +-- ConnectError                            QMP_CONNECT
 *    |    |    +-- TlsHandshakeError                  QMP_TLS
 *    |    +-- StateError                              QMP_STATE
 *    |    +-- QmpError (alias ExecuteError)           QMP_EXECUTE
 *    |    +-- ExecInterruptedError                    QMP_INTERRUPTED
 *    |    +-- ExecTimeoutError                        QMP_TIMEOUT
 *    |    +-- ExecAbortedError                        QMP_ABORTED
 *    |    +-- FeatureError                            QMP_FEATURE
 *    |    +-- EventOverflowError                      QMP_EVENT_OVERFLOW
 *    |    +-- EventTimeoutError                       QMP_EVENT_TIMEOUT
 *    |    +-- ProtocolError
 *    |    |    +-- ServerParseError                   QMP_PARSE
 *    |    |    +-- BadReplyError                      QMP_BAD_REPLY
 *    |    +-- MonitorLostError  orchestrator/errors.ts  MIGRATE_MONITOR_LOST
 *    +-- QmpServerError          qmp/errors.ts        QMP_OUTPUT_OVERFLOW
 *    +-- StreamError             migration/stream/qemu-file.ts  MIGRATION_STREAM
 *    +-- ChardevError            vm/chardev.ts        CHARDEV
 *    +-- UsageError              vm/cmdline.ts        VM_USAGE
 *    +-- CliUsageError           cli/errors.ts        CLI_USAGE
 *    +-- PeerUnreachableError    cli/errors.ts        CLI_PEER_UNREACHABLE
 *    +-- CliFailure              cli/errors.ts        CLI_FAILED
 *    +-- Interrupted             cli/errors.ts        CLI_INTERRUPTED
 *    +-- PreflightError          orchestrator/errors.ts  MIGRATE_PREFLIGHT
 *
 * Codes are UPPER_SNAKE, most with their layer first; QapiError's ends in QEMU's ErrorClass.
 * qapi/, qmp/, cli/ and orchestrator/ draw their subtrees again in their errors.ts, util/sockets.ts its
 * SocketError. Private to migration/outgoing.ts, `Cancelled` (MIGRATION_CANCELLED) never
 * leaves OutgoingMigration.run().
 */
export class QmigrateError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A caller gave a function or constructor something it cannot take: a name the schema does
 * not have, a malformed schema, a RAM block too small for the workload.
 */
export class ArgumentError extends QmigrateError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/**
 * A state qmigrate's own code should never reach: a bug, to be reported. The command line
 * answers it with its bug-report text, never as an ordinary failure.
 */
export class InternalError extends QmigrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INTERNAL', message, options);
  }
}
