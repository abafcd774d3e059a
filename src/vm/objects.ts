/**
 * The VM's user-creatable objects by id (QEMU's /objects container, qom/object_interfaces.c):
 * memory backends and the workload from the command line, TLS credentials and authz objects
 * from `-object` and `object-add`. It is the `TlsObjects` the migration engine looks up.
 */
import { authzList, authzSimple } from '../migration/tls/authz.js';
import { loadPskCreds } from '../migration/tls/psk.js';
import type { TlsAuthz, TlsCreds, TlsObjects } from '../migration/tls/types.js';
import { loadX509Creds } from '../migration/tls/x509.js';
import { genericError } from '../qapi/errors.js';
import type { ObjectOptions } from '../qapi/types.js';

type Entry =
  | { type: string; inUse: true }
  | { type: 'tls-creds-x509' | 'tls-creds-psk'; creds: TlsCreds }
  | { type: 'authz-simple' | 'authz-list'; authz: TlsAuthz };

/** QEMU's id_wellformed: a letter, then letters, digits, `-`, `.` and `_`. */
const ID = /^[A-Za-z][A-Za-z0-9._-]*$/;

export class VmObjects implements TlsObjects {
  readonly #byId = new Map<string, Entry>();

  /** Records an object the machine uses (a memory backend, the workload): object-del refuses it. */
  reserve(id: string, type: string): void {
    this.#byId.set(id, { type, inUse: true });
  }

  /**
   * Creates an object as object-add does (arguments already checked against the schema):
   * the id's form, the type's own loading, then the id's uniqueness, in QEMU's order.
   * @throws {QapiError} with QEMU 10.0's text.
   */
  add(o: ObjectOptions): void {
    if (!ID.test(o.id)) throw genericError("Parameter 'id' expects an identifier");
    const entry = create(o);
    if (this.#byId.has(o.id))
      throw genericError(`attempt to add duplicate property '${o.id}' to object (type 'container')`);
    this.#byId.set(o.id, entry);
  }

  /** object-del. @throws {QapiError} for an unknown id or an object the machine uses. */
  del(id: string): void {
    const e = this.#byId.get(id);
    if (!e) throw genericError(`object '${id}' not found`);
    if ('inUse' in e) throw genericError(`object '${id}' is in use, can not be deleted`);
    this.#byId.delete(id);
  }

  /** The QOM type of an object, or undefined. */
  typeOf(id: string): string | undefined {
    return this.#byId.get(id)?.type;
  }

  tlsCreds(id: string): TlsCreds | undefined {
    const e = this.#byId.get(id);
    return e && 'creds' in e ? e.creds : undefined;
  }

  authz(id: string): TlsAuthz | undefined {
    const e = this.#byId.get(id);
    return e && 'authz' in e ? e.authz : undefined;
  }
}

function create(o: ObjectOptions): Entry {
  switch (o['qom-type']) {
    case 'tls-creds-x509':
      return {
        type: o['qom-type'],
        creds: loadX509Creds({
          id: o.id,
          dir: o.dir,
          endpoint: o.endpoint,
          verifyPeer: o['verify-peer'],
          priority: o.priority,
          sanityCheck: o['sanity-check'],
          passwordid: o.passwordid,
        }),
      };
    case 'tls-creds-psk':
      return {
        type: o['qom-type'],
        creds: loadPskCreds({
          id: o.id,
          dir: o.dir,
          endpoint: o.endpoint,
          verifyPeer: o['verify-peer'],
          priority: o.priority,
          username: o.username,
        }),
      };
    case 'authz-simple':
      return { type: o['qom-type'], authz: authzSimple(o.id, o.identity) };
    case 'authz-list':
      return { type: o['qom-type'], authz: authzList(o.id, o.policy, o.rules) };
  }
}
