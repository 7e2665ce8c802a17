// Every process this benchmark starts, Node or not (the litestream binary), is registered here, so that none
// outlives it: killed on a normal exit, on an error, on Ctrl-C / SIGTERM / SIGHUP, and, through a small guardian
// process that notices when the benchmark's IPC channel closes, even when the benchmark itself is SIGKILLed.
import { fork, spawn, execFile } from 'node:child_process'
import { once } from 'node:events'
import { openSync, closeSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const GUARDIAN = fileURLToPath(new URL('../child/guardian.mjs', import.meta.url))
const live = new Set()
const cleanups = new Set()
let guardian = null

function startGuardian () {
  if (guardian) return
  guardian = fork(GUARDIAN, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  // The guardian must not keep the benchmark alive; it is disconnected at the end (or by the benchmark's death).
  guardian.unref()
  guardian.channel?.unref()
}

function tellGuardian (message) {
  startGuardian()
  if (guardian.connected) guardian.send(message)
}

function register (child) {
  live.add(child)
  tellGuardian({ type: 'watch', pid: child.pid })
  child.once('exit', () => {
    live.delete(child)
    tellGuardian({ type: 'unwatch', pid: child.pid })
  })
  return child
}

/** A Node child with an IPC channel; its stdout and stderr go to `logFile`. */
export function forkChild (script, args, logFile) {
  startGuardian()
  const fd = openSync(logFile, 'a')
  try {
    return register(fork(script, args, { stdio: ['ignore', fd, fd, 'ipc'] }))
  } finally {
    closeSync(fd)
  }
}

/** Any other program (the litestream binary); its stdout and stderr go to `logFile`. */
export function spawnChild (command, args, logFile) {
  startGuardian()
  const fd = openSync(logFile, 'a')
  try {
    const child = spawn(command, args, { stdio: ['ignore', fd, fd] })
    // A binary that cannot be started reports it as an 'error' event; exit follows with no code.
    child.once('error', () => {})
    return register(child)
  } finally {
    closeSync(fd)
  }
}

/**
 * A short command run to its end (a restore, an install), registered like the others; resolves with its output,
 * rejects (with `stderr` on the error) when it fails or outlives `timeout`.
 */
export function runCommand (command, args, options = {}) {
  startGuardian()
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { maxBuffer: 16 << 20, killSignal: 'SIGKILL', ...options }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }))
      else resolve({ stdout, stderr })
    })
    register(child)
  })
}

export function isRunning (child) {
  return child.exitCode === null && child.signalCode === null
}

/** Resolves once the child has exited (at once when it already has). */
export async function exited (child) {
  if (!isRunning(child)) return
  await once(child, 'exit')
}

/** The next message of a given type, or a rejection when the child exits first or takes longer than `ms`. */
export function nextMessage (child, type, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`child ${child.pid}: no "${type}" message within ${ms} ms`)), ms)
    const onMessage = (message) => {
      if (message?.type === 'error') done(new Error(`child ${child.pid}: ${message.message}`))
      else if (message?.type === type) done(null, message)
    }
    const onExit = (code, signal) => done(new Error(`child ${child.pid} exited (${signal ?? `code ${code}`}) before sending "${type}"`))
    function done (err, message) {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      if (err) reject(err)
      else resolve(message)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

/** A scratch directory, deleted when the benchmark ends however it ends, unless removed or kept before. */
export function scratchDir (dir) {
  const fn = () => rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 })
  cleanups.add(fn)
  tellGuardian({ type: 'dir', path: dir })
  const forget = () => {
    cleanups.delete(fn)
    tellGuardian({ type: 'undir', path: dir })
  }
  return {
    remove () {
      forget()
      fn()
    },
    keep: forget
  }
}

export function killAll () {
  for (const child of live) child.kill('SIGKILL')
}

/** The last step of a normal run: nothing left running, scratch removed, guardian released. */
export function shutdown () {
  killAll()
  for (const fn of cleanups) {
    try { fn() } catch {}
  }
  cleanups.clear()
  if (guardian?.connected) guardian.disconnect()
}

process.once('exit', shutdown)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, async () => {
    console.error(`\n[rpo] ${signal}: killing ${live.size} child process(es) and exiting`)
    // Waited for (2 s at most), so that they are reaped here and cannot write into a directory being removed.
    const children = [...live]
    killAll()
    await Promise.race([Promise.all(children.map(exited)), new Promise((resolve) => setTimeout(resolve, 2000))])
    shutdown()
    process.exit(130)
  })
}
