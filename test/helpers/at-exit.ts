/**
 * Last-resort cleanup for test helpers: what a test made outside its process (network
 * namespaces, peer processes, temp directories) is undone on exit and on SIGINT, SIGTERM or
 * SIGHUP, which end a node:test process without running its t.after hooks.
 */

const tasks = new Set<() => void>();
let hooked = false;

function runAll(): void {
  // Newest first, as t.after hooks run: peers go before their directories and namespaces.
  for (const task of [...tasks].reverse()) {
    tasks.delete(task);
    try {
      task();
    } catch {
      // One failed undo must not keep the rest from running.
    }
  }
}

/**
 * Registers `task` (synchronous) to run on process exit, or on SIGINT/SIGTERM/SIGHUP before
 * the process ends by that signal as it would have. @returns a function that unregisters it.
 */
export function atExit(task: () => void): () => void {
  if (!hooked) {
    hooked = true;
    process.on('exit', runAll);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        runAll();
        // The default action, now that nothing of ours is left.
        process.kill(process.pid, sig);
      });
    }
  }
  tasks.add(task);
  return () => tasks.delete(task);
}
