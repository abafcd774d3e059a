/**
 * Errors of the QMP layer, named as in QEMU's python/qemu/qmp/error.py and qmp_client.py.
 *
 *   QmigrateError (src/errors.ts)
 *    +-- QmpClientError          anything the client reports
 *         +-- ConnectError       no session: connect, greeting or negotiation failed
 *         |    +-- TlsHandshakeError  the TLS handshake failed; `check` says which check
 *         +-- StateError         the client is not in a state to do that (closed, ...)
 *         +-- QmpError           the peer answered a command with {error: {class, desc}}
 *         +-- ExecInterruptedError  the connection ended while a command waited
 *         +-- ExecTimeoutError   no answer within the command's timeout
 *         +-- ExecAbortedError   the caller's AbortSignal fired
 *         +-- FeatureError       the peer cannot express the request (e.g. no `channels`)
 *         +-- EventOverflowError an event listener was not read and stopped holding events
 *         +-- EventTimeoutError  waitFor() saw no matching event within its timeout
 *         +-- ProtocolError      the peer broke the protocol
 *              +-- ServerParseError  a message was not JSON
 *              +-- BadReplyError     a message was JSON but not a QMP message
 *    +-- QmpServerError          why the server dropped a client's session
 */
import { QmigrateError } from '../errors.js';

export class QmpClientError extends QmigrateError {}

export class ConnectError extends QmpClientError {
  constructor(message: string, options?: { cause?: unknown }, code = 'QMP_CONNECT') {
    super(code, message, options);
  }
}

/**
 * Which TLS check failed: the server's certificate is signed by no CA we trust, does not
 * carry the name we expected, is expired (or not valid yet) or revoked; the server refused
 * (or required) our client certificate; the peer does not speak TLS; something else.
 */
export type TlsCheck =
  | 'unknown-ca'
  | 'hostname'
  | 'expired'
  | 'revoked'
  | 'client-certificate'
  | 'not-tls'
  | 'other';

/** The TLS handshake with a monitor failed; a ConnectError, so callers that catch those still do. */
export class TlsHandshakeError extends ConnectError {
  readonly check: TlsCheck;

  constructor(check: TlsCheck, message: string, options?: { cause?: unknown }) {
    super(message, options, 'QMP_TLS');
    this.check = check;
  }
}

export class StateError extends QmpClientError {
  constructor(message: string) {
    super('QMP_STATE', message);
  }
}

/** The error a command returned. `errorClass` and `desc` are QEMU's, verbatim. */
export class QmpError extends QmpClientError {
  readonly errorClass: string;
  readonly desc: string;
  /** The message that was sent, and the reply, as evidence. */
  readonly sent: unknown;
  readonly received: unknown;

  constructor(errorClass: string, desc: string, sent?: unknown, received?: unknown) {
    super('QMP_EXECUTE', desc);
    this.errorClass = errorClass;
    this.desc = desc;
    this.sent = sent;
    this.received = received;
  }
}
/** qemu.qmp's name for the same thing. */
export { QmpError as ExecuteError };

export class ExecInterruptedError extends QmpClientError {
  constructor(command: string, options?: { cause?: unknown }) {
    super('QMP_INTERRUPTED', `connection closed while '${command}' waited for its reply`, options);
  }
}

export class ExecTimeoutError extends QmpClientError {
  constructor(command: string, ms: number) {
    super('QMP_TIMEOUT', `'${command}' got no reply within ${ms} ms`);
  }
}

export class ExecAbortedError extends QmpClientError {
  constructor(command: string, reason: unknown) {
    super('QMP_ABORTED', `'${command}' was aborted`, { cause: reason });
  }
}

export class FeatureError extends QmpClientError {
  constructor(message: string) {
    super('QMP_FEATURE', message);
  }
}

export class EventOverflowError extends QmpClientError {
  /** The events the listener held, in order (those after them were not kept). */
  readonly events: unknown[];

  constructor(max: number, events: unknown[]) {
    super('QMP_EVENT_OVERFLOW', `event listener held ${max} events nobody took; later ones were not kept`);
    this.events = events;
  }
}

export class EventTimeoutError extends QmpClientError {
  constructor(event: string, ms: number) {
    super('QMP_EVENT_TIMEOUT', `no ${event} event within ${ms} ms`);
  }
}

export class ProtocolError extends QmpClientError {}

export class ServerParseError extends ProtocolError {
  constructor(
    readonly line: string,
    cause: unknown,
  ) {
    super('QMP_PARSE', `peer sent a message that is not JSON: ${line.slice(0, 200)}`, { cause });
  }
}

export class BadReplyError extends ProtocolError {
  constructor(
    readonly msg: unknown,
    why: string,
  ) {
    super('QMP_BAD_REPLY', `peer sent an invalid QMP message (${why})`);
  }
}

/** Why the QMP server dropped a session (e.g. QMP_OUTPUT_OVERFLOW: the client stopped reading). */
export class QmpServerError extends QmigrateError {}
