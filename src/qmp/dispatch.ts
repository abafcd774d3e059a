/**
 * Request dispatch on the server side, in QEMU's order (qapi/qmp-dispatch.c): the request
 * object's own members, the command lookup, OOB permission, then the command's arguments
 * through the schema checker, then the handler. Replies carry the request's `id` verbatim.
 */
import { ArgumentError } from '../errors.js';
import { checkCommand } from '../qapi/check.js';
import { QapiError, type QmpErrorClass } from '../qapi/errors.js';
import { qdictOrder } from '../qapi/json.js';
import type { Schema } from '../qapi/schema.js';
import type { CommandName, Commands } from '../qapi/types.js';

/** What a handler knows of the session that called it. */
export interface SessionContext {
  /** A label for logs: `unix:/path#3`, `stdio`, ... */
  readonly name: string;
  /** File descriptors received on this connection, not yet claimed (SCM_RIGHTS). */
  readonly fds: number[];
}

export type Handler<C extends CommandName = CommandName> = (
  args: Commands[C]['args'],
  session: SessionContext,
) => Commands[C]['returns'] | Promise<Commands[C]['returns']>;

export type Reply =
  | { return: unknown; id?: unknown }
  | { error: { class: QmpErrorClass; desc: string }; id?: unknown };

export class Dispatcher {
  readonly schema: Schema;
  readonly #handlers = new Map<string, Handler>();

  constructor(schema: Schema) {
    this.schema = schema;
  }

  /**
   * Installs the handler of a schema command (replacing any earlier one).
   * @throws {ArgumentError} when the schema has no such command.
   */
  register<C extends CommandName>(command: C, handler: Handler<C>): this {
    if (!this.schema.commands.has(command))
      throw new ArgumentError(`register: ${command} is not in the schema`);
    this.#handlers.set(command, handler as unknown as Handler);
    return this;
  }

  /** Commands that have a handler, i.e. what `query-commands` lists. */
  get commands(): string[] {
    return [...this.#handlers.keys()];
  }

  has(command: string): boolean {
    return this.#handlers.has(command);
  }

  /**
   * Checks a request object's members as QEMU does (members in QDict order, so the first
   * complaint is QEMU's). Returns the command, its arguments and whether it came as exec-oob.
   * @throws {QapiError}
   */
  parseRequest(
    request: unknown,
    allowOob: boolean,
  ): { command: string; args: Record<string, unknown> | undefined; oob: boolean } {
    if (typeof request !== 'object' || request === null || Array.isArray(request)) {
      throw new QapiError('QMP input must be a JSON object');
    }
    const dict = request as Record<string, unknown>;
    let command: string | undefined;
    let oob = false;
    for (const key of qdictOrder(Object.keys(dict))) {
      const v = dict[key];
      if (key === 'execute' || (key === 'exec-oob' && allowOob)) {
        if (typeof v !== 'string') throw new QapiError(`QMP input member '${key}' must be a string`);
        if (command !== undefined) {
          throw new QapiError(
            `QMP input member '${key}' clashes with '${key === 'execute' ? 'exec-oob' : 'execute'}'`,
          );
        }
        command = v;
        oob = key === 'exec-oob';
      } else if (key === 'arguments') {
        if (typeof v !== 'object' || v === null || Array.isArray(v)) {
          throw new QapiError("QMP input member 'arguments' must be an object");
        }
      } else if (key !== 'id') {
        throw new QapiError(`QMP input member '${key}' is unexpected`);
      }
    }
    if (command === undefined) throw new QapiError("QMP input lacks member 'execute'");
    return { command, args: dict.arguments as Record<string, unknown> | undefined, oob };
  }

  /**
   * Runs a parsed request: lookup, OOB permission, argument check, handler.
   * @returns the `return` value.
   * @throws {QapiError} with QEMU's class and text.
   */
  async run(
    command: string,
    args: Record<string, unknown> | undefined,
    oob: boolean,
    session: SessionContext,
  ) {
    const handler = this.#handlers.get(command);
    const def = this.schema.commands.get(command);
    if (!handler || !def) throw new QapiError(`The command ${command} has not been found`, 'CommandNotFound');
    if (oob && !def.allowOob) throw new QapiError(`The command ${command} does not support OOB`);
    const typed = checkCommand(command, args ?? {}, this.schema);
    const ret = await handler(typed as never, session);
    return ret ?? {};
  }
}

/** A QMP reply for a request `id` (absent when the request had none). */
export function reply(id: unknown, outcome: { return: unknown } | { error: QapiError }): Reply {
  const r: Record<string, unknown> =
    'error' in outcome ? { error: outcome.error.toQmp() } : { return: outcome.return };
  if (id !== undefined) r.id = id;
  return r as Reply;
}
