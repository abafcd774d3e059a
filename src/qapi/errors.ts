/**
 * Errors of the QAPI layer: each one is what QEMU would put in a QMP error reply,
 * `{"error": {"class": ..., "desc": ...}}` (docs/interop/qmp-spec.rst, section 2.4.2).
 *
 *   QmigrateError (src/errors.ts)
 *    +-- QapiError   class + desc, exactly as QEMU words them
 */
import { QmigrateError } from '../errors.js';

/** QEMU's ErrorClass values (qapi/control.json); nearly everything is GenericError. */
export type QmpErrorClass =
  | 'GenericError'
  | 'CommandNotFound'
  | 'DeviceNotActive'
  | 'DeviceNotFound'
  | 'KVMMissingCap';

export class QapiError extends QmigrateError {
  readonly errorClass: QmpErrorClass;

  constructor(desc: string, errorClass: QmpErrorClass = 'GenericError', options?: { cause?: unknown }) {
    super(`QAPI_${errorClass}`, desc, options);
    this.errorClass = errorClass;
  }

  /** The text QEMU would send as `desc`. */
  get desc(): string {
    return this.message;
  }

  /** The `error` member of a QMP reply. */
  toQmp(): { class: QmpErrorClass; desc: string } {
    return { class: this.errorClass, desc: this.message };
  }
}

/** Shorthand for the common case, QEMU's error_setg(). */
export function genericError(desc: string): QapiError {
  return new QapiError(desc, 'GenericError');
}
