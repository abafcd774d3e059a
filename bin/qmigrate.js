#!/usr/bin/env node
// Thin launcher: the CLI itself is compiled TypeScript in dist/ (built by `npm ci` through `prepare`).
import('../dist/cli/index.js').then((cli) => cli.main(process.argv.slice(2)));
