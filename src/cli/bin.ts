// The executable entry: `qmigrate ARGS`. bin/qmigrate.js loads the compiled copy of this file.
import { main } from './index.js';

void main(process.argv.slice(2));
