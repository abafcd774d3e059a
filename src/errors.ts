/**
 * The root of qmigrate's error tree. Every error the package throws on purpose is a
 * QmigrateError with a stable `code` (for programs) and an optional `cause` (for people).
 *
 *   QmigrateError
 *    +-- QapiError            (qapi/errors.ts: a QMP error reply {class, desc})
 *    +-- ... one subtree per layer, drawn in that layer's errors.ts
 */
export class QmigrateError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}
