import t from 'tap'
import { fork, execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { copyFileSync, existsSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { integrityCheck, delay } from './helpers'

// The machine dies with the app: SIGKILL at a random moment, then a restore from the destination alone (the
// database's own files are moved away first). The restored rows must be exactly a prefix of those committed,
// hold every row a resolved sync() covered, and lose at most the sync interval and a little more.
const TRIALS = Number(process.env.CONTINUOUS_CRASH_TRIALS ?? 5)
const CLI = join(__dirname, '..', 'dist', 'cli', 'main.js')
const APP = join(__dirname, 'fixtures', 'continuous-app.js')
// 1 s sync interval; the rest is room for a loaded machine (the figures of a quiet one are in BENCHMARKS.md).
const MAX_LOSS_MS = 3000
t.setTimeout(60_000 + TRIALS * 20_000)

function committedRows (path: string): Array<{ n: number, at: number }> {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    return db.prepare('SELECT n, at FROM log ORDER BY n').all() as Array<{ n: number, at: number }>
  } finally {
    db.close()
  }
}

for (let trial = 1; trial <= TRIALS; trial++) {
  // Odd trials call sync() in a loop (RPO 0 for what it confirmed); even ones rely on the sync interval alone.
  const mode = trial % 2 === 1 ? 'sync' : 'timer'
  t.test(`kill ${trial} (${mode}): the restore is a prefix of the commits and holds every synced one`, async (t) => {
    const dir = t.testdir()
    const machine = join(dir, 'machine')
    const { mkdirSync } = await import('node:fs')
    mkdirSync(machine)
    const path = join(machine, 'app.db')
    const setup = new Database(path)
    setup.pragma('journal_mode = WAL')
    setup.exec('CREATE TABLE log (n INTEGER PRIMARY KEY, at INTEGER NOT NULL)')
    setup.close()
    const destination = join(dir, 'backups')

    const child = fork(APP, [path, destination, mode], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [] })
    t.teardown(() => { child.kill('SIGKILL') })
    let synced = 0
    const ready = new Promise<void>((resolve) => {
      child.on('message', (message: { synced?: number, ready?: boolean, error?: string }) => {
        if (message.ready) resolve()
        if (message.synced !== undefined) synced = message.synced
        if (message.error) t.fail(message.error)
      })
    })
    const exited = once(child, 'exit')
    await ready
    await delay(1000 + Math.random() * 2000)
    const confirmed = synced
    const killedAt = Date.now()
    child.kill('SIGKILL')
    await exited

    // Ground truth, read once from a copy; then the machine is gone.
    const truth = join(dir, 'truth.db')
    copyFileSync(path, truth)
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${truth}-wal`)
    const committed = committedRows(truth)
    renameSync(machine, join(dir, 'gone'))

    const out = join(dir, 'restored.db')
    execFileSync(process.execPath, [CLI, 'restore', destination, '--to', out], { stdio: 'pipe' })
    t.equal(integrityCheck(out), 'ok')
    const restored = committedRows(out)
    t.same(restored, committed.slice(0, restored.length), `exactly the first ${restored.length} of ${committed.length} commits`)
    t.ok(restored.length >= confirmed, `every commit a resolved sync() covered is there (${confirmed})`)
    const lastCommitted = committed.at(-1)?.at ?? killedAt
    const lastRestored = restored.at(-1)?.at ?? committed[0]?.at ?? killedAt
    t.ok(lastCommitted - lastRestored <= MAX_LOSS_MS, `lost ${lastCommitted - lastRestored} ms of commits`)
  })
}
