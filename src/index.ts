/**
 * qmigrate's public API, the package's main entry: the typed QMP client, the QMP server and
 * its dispatcher, and the QAPI layer under them (the schema and its types, the argument
 * checker, JSON as QEMU reads it, the URI codec, the migration command rules), with QEMU
 * 10.0's semantics and texts. The migration engine and `qmigrate vm` are run by the CLI.
 */
export { QmigrateError } from './errors.js';
export { checkCommand, checkType } from './qapi/check.js';
export { QapiError, type QmpErrorClass } from './qapi/errors.js';
export { JsonDouble, parseJson, stringifyJson } from './qapi/json.js';
export * from './qapi/migration-rules.js';
export { Schema, schema } from './qapi/schema.js';
export type * from './qapi/types.js';
export {
  addressToEquivalentUri,
  addressToUri,
  parseMigrationUri,
  socketAddressToString,
  uriToChannel,
} from './qapi/uri.js';
export { type ConnectOptions, type Greeting, type QmpAddress, QmpClient } from './qmp/client.js';
export { Dispatcher, type Handler, type SessionContext } from './qmp/dispatch.js';
export * from './qmp/errors.js';
export { EventListener, type QmpEvent } from './qmp/events.js';
export type { ExecuteOptions } from './qmp/methods.js';
export { type ListenSpec, QmpServer, type QmpServerOptions } from './qmp/server.js';
export { SocketError } from './util/sockets.js';
