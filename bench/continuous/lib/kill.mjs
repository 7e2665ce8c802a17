// One measured crash: fresh directories, the app and its backup tool started, the first snapshot awaited, a random
// 2–5 s of writes, then SIGKILL to every process at once. Restored from the destination alone, then checked.
//
// Layout of a run's directory: machine/ is the machine that dies (database, -wal, staging, config, logs), moved
// away to machine-gone/ before the restore; destination/ is where the backups went; restore/ gets the restored
// database.
import { mkdirSync, mkdtempSync, readFileSync, existsSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { exited, isRunning, scratchDir } from './procs.mjs'
import { createDatabase, committedRows, checkRestored } from './check.mjs'
import { storedBytes } from './files.mjs'
import { CONTINUOUS_CACHE } from './paths.mjs'

const CHECKPOINT_EVERY_MS = 2000
const CHECKPOINT_CALLS = 3
const CHECKPOINT_LIMIT_MS = 30_000

/**
 * `scenario` is 'kill' (hold a random 2–5 s after the first snapshot) or 'checkpoint' (the app also calls
 * wal_checkpoint(TRUNCATE) every 2 s; hold until it has made CHECKPOINT_CALLS calls). Never throws: whatever goes
 * wrong is the record's `error`, and the run's directory is then kept for a look (all of them with `keep`).
 */
export async function measureKill ({ method, scenario, rate, keep, log }) {
  mkdirSync(CONTINUOUS_CACHE, { recursive: true })
  const runDir = mkdtempSync(join(CONTINUOUS_CACHE, `${method.name}-${scenario}-`))
  const scratch = scratchDir(runDir)
  const machineDir = join(runDir, 'machine')
  const destinationDir = join(runDir, 'destination')
  const restoreDir = join(runDir, 'restore')
  for (const dir of [machineDir, destinationDir, restoreDir]) mkdirSync(dir, { recursive: true })
  const dbPath = join(machineDir, 'app.db')
  createDatabase(dbPath)

  const record = { method: method.name, scenario, rate, dir: runDir }
  // Filled by the method as it starts processes, so that they are killed here whatever happens.
  const processes = []
  const logs = []
  let run = null
  const checkpoints = []
  let progress = null
  try {
    const startedAt = Date.now()
    run = await method.start({ dbPath, machineDir, destinationDir, rate, checkpointEveryMs: scenario === 'checkpoint' ? CHECKPOINT_EVERY_MS : 0, processes, logs })
    record.synchronous = run.synchronous
    if (run.options) record.options = run.options
    if (run.notes?.length) {
      record.notes = run.notes
      for (const note of run.notes) log(`  WARNING ${method.name}: ${note}`)
    }
    run.writer.on('message', (message) => {
      if (message?.type === 'progress') progress = message
      else if (message?.type === 'checkpoint') checkpoints.push(message)
    })
    const snapshot = await run.waitForSnapshot()
    record.firstSnapshotMs = Date.now() - startedAt
    record.firstSnapshot = snapshot

    const holdStarted = Date.now()
    if (scenario === 'kill') {
      record.holdMs = Math.round(2000 + Math.random() * 3000)
      await sleep(record.holdMs)
    } else {
      // Checkpoints are counted from the first snapshot on, so every call ran against the running backup tool.
      const before = checkpoints.length
      while (checkpoints.length - before < CHECKPOINT_CALLS && Date.now() - holdStarted < CHECKPOINT_LIMIT_MS) await sleep(20)
      // A little more writing after the last call, so that the kill does not land right on it.
      await sleep(300 + Math.random() * 700)
      record.holdMs = Date.now() - holdStarted
      record.checkpoints = checkpoints.slice(before)
    }
    const dead = processes.find((p) => !isRunning(p.child))
    if (dead) throw new Error(`${dead.name} had already exited (${dead.child.signalCode ?? `code ${dead.child.exitCode}`}) before the kill`)

    // The machine dies: every process in the same instant, the writer first so no commit follows the clock read.
    record.killedAt = Date.now()
    for (const p of processes) p.child.kill('SIGKILL')
    await Promise.all(processes.map((p) => exited(p.child)))
    record.reported = progress
    record.writerErrors = progress?.errors ?? null

    const committed = committedRows(dbPath, join(restoreDir, 'committed-copy.db'))
    record.committed = committed.last
    record.lastCommitT = committed.last ? committed.t[committed.last] : null
    // How long before the kill the last commit was; at 250/s, about 4 ms (a blocked writer shows here).
    record.lastCommitBeforeKillMs = record.lastCommitT === null ? null : record.killedAt - record.lastCommitT
    record.achievedRate = committed.last > 1 ? (committed.last - 1) / ((committed.t[committed.last] - committed.t[1]) / 1000) : null
    if (progress && progress.n > committed.last) throw new Error(`the writer reported n ${progress.n} committed, the files hold only ${committed.last}`)
    if (method.noBackup) return record

    // The machine is gone: its directory is moved away, so a restore that reached for anything on it would fail.
    const goneDir = join(runDir, 'machine-gone')
    renameSync(machineDir, goneDir)
    logs.splice(0, logs.length, ...logs.map((file) => goneDir + file.slice(machineDir.length)))

    record.destination = storedBytes(destinationDir)
    const out = join(restoreDir, 'restored.db')
    const restoreStarted = performance.now()
    try {
      await method.restore({ destinationDir, out })
    } catch (err) {
      record.restoreMs = performance.now() - restoreStarted
      throw new Error(`restore failed: ${(err.stderr || err.message).trim().split('\n').slice(-3).join(' | ')}`)
    }
    record.restoreMs = performance.now() - restoreStarted
    if (!existsSync(out)) throw new Error(`restore exited 0 but wrote no ${out}`)
    record.check = checkRestored(out, committed)
    if (!record.check.ok) throw new Error(`restored database is wrong: ${record.check.problems.join('; ')}`)
    return record
  } catch (err) {
    // One line for the tables; the whole message (a child's stack) stays in the JSON.
    record.error = err.message.split('\n')[0]
    record.errorDetail = err.message
    record.logTail = tails(logs)
    log(`FAILED ${method.name} ${scenario}: ${record.error}`)
    for (const [file, tail] of Object.entries(record.logTail)) if (tail) log(`  ${file}:\n${tail.replace(/^/gm, '    ')}`)
    return record
  } finally {
    for (const p of processes) p.child.kill('SIGKILL')
    await Promise.all(processes.map((p) => exited(p.child)))
    if (record.error || keep) {
      scratch.keep()
      log(`  kept ${runDir}${record.error ? ' for a look' : ''}`)
    } else {
      scratch.remove()
    }
  }
}

function tails (files) {
  return Object.fromEntries(files.filter(existsSync).map((file) => [file, readFileSync(file, 'utf8').trim().split('\n').slice(-8).join('\n')]))
}
