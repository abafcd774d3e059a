// --help of migrate and demo documents --report FILE.html, with an example each (the
// installed bin, as cli-help.test.ts runs it).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/qmigrate.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

test('qmigrate migrate --help: the --report option, what the page holds, an example, its exit code', () => {
  const r = run('migrate', '--help');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^ {2}--report <file\.html> +\[path\] write an HTML picture of the migration$/m);
  assert.match(
    r.stdout,
    /^Report: --report FILE\.html writes one self-contained page \(no script, nothing fetched\) when$/m,
  );
  assert.match(r.stdout, /the downtime window and any postcopy phase marked/);
  assert.match(
    r.stdout,
    /^ {2}qmigrate migrate --from \/run\/src\.qmp --to \/run\/dst\.qmp --unix \/run\/mig\.sock --report migration\.html$/m,
  );
  assert.match(r.stdout, /^ {7}\(also: the --report file could not be written\)$/m);
});

test('qmigrate demo --help: the --report option and examples', () => {
  const r = run('demo', '--help');
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stdout,
    /^ {2}--report <file\.html> +\[path\] write an HTML picture of the migration\s+\(unix, tcp\)$/m,
  );
  assert.match(r.stdout, /^Examples:\n {2}qmigrate demo\n/m);
  assert.match(r.stdout, /^ {2}qmigrate demo --size 1024 --max-bandwidth 209715200 --report demo\.html$/m);
});
