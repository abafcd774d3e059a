// Two qmigrate VMs in the test's own process with TLS objects built here (the VM's -object
// parsing is tested elsewhere): x509 credentials from a tls-certs directory, an authz list of
// DNs, and a Vm whose engine sees them.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Engine } from '../../src/migration/engine.js';
import type { TlsCreds, TlsEndpoint, TlsObjects } from '../../src/migration/tls/types.js';
import { Vm } from '../../src/vm/vm.js';

/** tls-creds-x509 `id` for `endpoint`, from QEMU's file names in `dir`. */
export function x509Creds(id: string, dir: string, endpoint: TlsEndpoint, verifyPeer = true): TlsCreds {
  const f = (n: string) => readFileSync(join(dir, n));
  return {
    id,
    type: 'tls-creds-x509',
    endpoint,
    verifyPeer,
    tlsOptions: { ca: f('ca-cert.pem'), cert: f(`${endpoint}-cert.pem`), key: f(`${endpoint}-key.pem`) },
  };
}

/** These credentials by id, and with `allowed` an authz object `auth0` letting in those DNs. */
export function tlsObjects(list: TlsCreds[], allowed?: string[]): TlsObjects {
  return {
    tlsCreds: (id) => list.find((c) => c.id === id),
    authz: (id) => (id === 'auth0' && allowed ? { id, isAllowed: (dn) => allowed.includes(dn) } : undefined),
  };
}

/** A VM with `host` as its RAM block m0 and `tls` as its objects; closed after the test. */
export function tlsVm(t: TestContext, tls: TlsObjects, host: Buffer, incoming?: string): Vm {
  const box: { engine?: Engine } = {};
  const v = new Vm({
    ram: [{ idstr: 'm0', host, filled: true, shared: true }],
    incoming,
    engine: {
      startOutgoing: (p, m) => box.engine!.startOutgoing(p, m),
      startIncoming: (p, m, e) => box.engine!.startIncoming(p, m, e),
    },
  });
  box.engine = new Engine({
    ram: v.ram,
    runstate: v.runstate,
    fds: v.fds,
    fdsets: v.fdsets,
    fatal: () => {},
    tls,
  });
  t.after(() => v.close());
  return v;
}
