// Whether the benchmark was told to stop (Ctrl-C, SIGTERM, SIGHUP). procs.mjs kills the children and exits; what
// fails meanwhile because its child was killed is no failure worth keeping a directory for.
let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(signal, () => { interrupted = true })

export function wasInterrupted () {
  return interrupted
}
