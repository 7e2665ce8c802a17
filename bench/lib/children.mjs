// Every child process the bench starts is registered here, so that none outlives the bench, whatever ends it.
import { fork } from 'node:child_process'
import { once } from 'node:events'

const live = new Set()

/** `execArgv`: Node's options for the child, added to this process's own. */
export function forkChild (script, args = [], { execArgv = [] } = {}) {
  const child = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [...process.execArgv, ...execArgv] })
  live.add(child)
  child.once('exit', () => live.delete(child))
  return child
}

/** The next message of a given type, or a rejection when the child exits first or takes longer than `ms`. */
export function nextMessage (child, type, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`child ${child.pid}: no "${type}" message within ${ms} ms`)), ms)
    const onMessage = (message) => {
      if (message?.type === 'error') done(new Error(`child ${child.pid}: ${message.message}`))
      else if (message?.type === type) done(null, message)
    }
    const onExit = (code) => done(new Error(`child ${child.pid} exited (code ${code}) before sending "${type}"`))
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

/** Waits up to `ms` for a child to exit by itself, then kills it. */
export async function reap (child, ms = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  await once(child, 'exit')
  clearTimeout(timer)
}

export function killAll () {
  for (const child of live) child.kill('SIGKILL')
}

process.once('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killAll()
    process.exit(130)
  })
}
