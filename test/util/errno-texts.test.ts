// The errno and getaddrinfo texts qmigrate prints are glibc's, for every errno the platform
// knows, checked against this machine's glibc (through perl, whose $! and getaddrinfo errors
// are glibc's strerror() and gai_strerror()), and on real Node errors of the transports.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { constants } from 'node:os';
import { test } from 'node:test';
import { errnoText, gaiStrerror, strerror } from '../../src/util/errno.js';

/** glibc's strerror() of each number, in the C locale. */
function glibcStrerror(numbers: number[]): Map<number, string> {
  const out = execFileSync(
    'perl',
    ['-e', 'for (@ARGV) { $! = $_; print "$_\\t$!\\n" }', ...numbers.map(String)],
    {
      env: { ...process.env, LC_ALL: 'C' },
      encoding: 'utf8',
    },
  );
  return new Map(
    out
      .trim()
      .split('\n')
      .map((l) => [Number(l.split('\t')[0]), l.split('\t')[1]!] as const),
  );
}

test("every errno in os.constants.errno has glibc's strerror() text, by name and by number", () => {
  const entries = Object.entries(constants.errno);
  const glibc = glibcStrerror(entries.map(([, n]) => n));
  for (const [name, n] of entries) {
    const want = glibc.get(n);
    assert.equal(errnoText(name), want, name);
    assert.equal(errnoText(n), want, `${n}`);
    assert.equal(errnoText(-n), want, `-${n}`);
    assert.equal(strerror({ code: name, errno: -n, message: `x ${name}` }), want, name);
  }
});

test("every Linux errno number up to 133 has glibc's text, the names Node does not list too", () => {
  const numbers = Array.from({ length: 133 }, (_, i) => i + 1).filter((n) => n !== 41 && n !== 58);
  const glibc = glibcStrerror(numbers);
  for (const n of numbers) assert.equal(errnoText(n), glibc.get(n), `${n}`);
  // An errno libuv has no name for reaches us as a number only.
  assert.equal(strerror({ code: 'Unknown system error -126', errno: -126 }), glibc.get(126));
});

test("getaddrinfo errors get gai_strerror()'s texts, as glibc words them", () => {
  // perl's getaddrinfo returns glibc's gai_strerror() text for each failure.
  const cases: [string, string][] = [
    ['EAI_BADFLAGS', 'getaddrinfo("localhost", "80", {flags => 0x7fff0000})'],
    ['EAI_SERVICE', 'getaddrinfo("localhost", "no-such-service-x", {socktype => SOCK_STREAM})'],
    ['EAI_NONAME', 'getaddrinfo("no such host", "80", {flags => AI_NUMERICHOST})'],
    ['EAI_FAMILY', 'getaddrinfo("localhost", "80", {family => 12345})'],
    ['EAI_SOCKTYPE', 'getaddrinfo("localhost", "80", {socktype => 12345})'],
  ];
  const uv: Record<string, number> = {
    EAI_BADFLAGS: -3002,
    EAI_SERVICE: -3010,
    EAI_NONAME: -3008,
    EAI_FAMILY: -3005,
    EAI_SOCKTYPE: -3011,
  };
  for (const [name, call] of cases) {
    const want = execFileSync(
      'perl',
      ['-MSocket=:addrinfo,SOCK_STREAM', '-e', `my ($e) = ${call}; print "$e"`],
      {
        env: { ...process.env, LC_ALL: 'C' },
        encoding: 'utf8',
      },
    );
    assert.equal(gaiStrerror({ code: name, errno: uv[name], syscall: 'getaddrinfo' }), want, name);
  }
  // Node folds EAI_NONAME into ENOTFOUND; its errno still says which.
  assert.equal(
    strerror({ code: 'ENOTFOUND', errno: -3008, syscall: 'getaddrinfo' }),
    'Name or service not known',
  );
  assert.equal(
    strerror({ code: 'ENOTFOUND', errno: -3007, syscall: 'getaddrinfo' }),
    'No address associated with hostname',
  );
});

test('real Node errors of the transports get the texts QEMU prints', async () => {
  const refused = await new Promise<Error>((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => connect(port, '127.0.0.1').once('error', resolve));
    });
  });
  assert.equal(strerror(refused), 'Connection refused');
  const missing = await new Promise<Error>((resolve) =>
    connect('/nonexistent/qmigrate.sock').once('error', resolve),
  );
  assert.equal(strerror(missing), 'No such file or directory');
  assert.equal(strerror(new Error('not a system error')), 'not a system error');
});
