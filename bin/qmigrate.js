#!/usr/bin/env node
// Thin launcher: the CLI itself is compiled TypeScript in dist/ (built by `npm ci` through `prepare`).
import '../dist/cli/bin.js';
