// The executable entry: `qmigrate ARGS`. bin/qmigrate.js loads the compiled copy of this file.
import { main } from './index.js';

void main(process.argv.slice(2)).then((code) => {
  // The exit code is known: nothing a command left open may keep the process alive.
  setTimeout(() => process.exit(code), 2000).unref();
});
