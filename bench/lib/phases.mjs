// The plugin's snapshot steps, timed one by one (no writer), beside the copy limit measured in the same breath:
// where the time between the two goes.
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { once } from 'node:events'
import Database from 'better-sqlite3'
import { SCRATCH_DIR, ensureDirs } from './paths.mjs'

const requireBuilt = createRequire(import.meta.url)
const { snapshotDatabase, snapshotTask } = requireBuilt('../../dist/snapshot.js')
const { checkDatabaseFile } = requireBuilt('../../dist/worker/file-checks.js')

// The plugin's settings (lib/snapshot.ts).
const PAGES_PER_STEP = 1024
const SOURCE_CACHE_KIB = 2048

function since (started) {
  return Number(process.hrtime.bigint() - started) / 1e6
}

async function timed (fn) {
  const started = process.hrtime.bigint()
  await fn()
  return since(started)
}

async function fsyncFile (path, datasync) {
  const handle = await open(path, 'r+')
  try {
    await (datasync ? handle.datasync() : handle.sync())
  } finally {
    await handle.close()
  }
}

async function pageCopy (source, target, pagesPerStep) {
  const db = new Database(source, { readonly: true, fileMustExist: true })
  try {
    db.pragma(`cache_size = -${SOURCE_CACHE_KIB}`)
    db.exec('BEGIN')
    db.prepare('SELECT count(*) FROM sqlite_schema').get()
    await db.backup(target, { progress: () => pagesPerStep })
    db.exec('COMMIT')
  } finally {
    db.close()
  }
}

export async function measurePhases (dbPath) {
  ensureDirs()
  const dir = mkdtempSync(join(SCRATCH_DIR, 'phases-'))
  const copy = join(dir, 'copy.sqlite')
  const plain = join(dir, 'plain.sqlite')
  const pages = join(dir, 'pages.sqlite')
  try {
    const result = {}
    result.workerStartMs = await timed(async () => {
      // An empty worker: what starting a thread costs, before it does any work.
      const worker = new Worker('', { eval: true })
      await once(worker, 'exit')
    })
    // The plugin's copy itself (lib/snapshot.ts, as built): raw bytes with the WAL laid over, hashed, flushed.
    writeFileSync(copy, '')
    result.rawCopyMs = await timed(() => snapshotDatabase({ source: dbPath, tempPath: copy }, () => false))
    // The plugin's check of the copy, as built (its page cache settings included).
    result.quickCheckMs = await timed(() => checkDatabaseFile(copy, 'quick_check'))
    rmSync(copy, { force: true })
    // The whole snapshot task as the snapshot thread runs it (the thread itself is started when the app is ready):
    // a large snapshot is checked through its pin, beside its copy or after it as the CPUs allow, a small one after it.
    writeFileSync(copy, '')
    result.pluginStepsMs = await timed(() => snapshotTask({ source: dbPath, tempPath: copy }, () => false))
    rmSync(copy, { force: true })

    // The copy through SQLite's backup API, which the plugin keeps for rollback-journal databases.
    result.pageCopyMs = await timed(async () => {
      await pageCopy(dbPath, pages, PAGES_PER_STEP)
      await fsyncFile(pages, true)
    })
    rmSync(pages, { force: true })
    result.copyFileMs = await timed(() => copyFileSync(dbPath, plain))
    result.copyFsyncMs = await timed(() => fsyncFile(plain, false))
    result.copyLimitMs = result.copyFileMs + result.copyFsyncMs
    return result
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
