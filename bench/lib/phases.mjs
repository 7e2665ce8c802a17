// The plugin's snapshot steps, timed one by one by doing the same work directly with better-sqlite3 (no writer),
// beside the copy limit measured in the same breath: where the time between the two goes.
import { copyFileSync, createReadStream, mkdtempSync, rmSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { once } from 'node:events'
import Database from 'better-sqlite3'
import { SCRATCH_DIR, ensureDirs } from './paths.mjs'

// The plugin's settings (lib/snapshot.ts).
const PAGES_PER_STEP = 1024
const SOURCE_CACHE_KIB = 2048
// better-sqlite3 clamps the step to 0..2^31-1 (a negative step would copy nothing, forever).
const ALL_PAGES = 0x7fffffff

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
  const oneStep = join(dir, 'one-step.sqlite')
  try {
    const result = {}
    result.workerStartMs = await timed(async () => {
      // An empty worker: what starting a thread costs, before it does any work.
      const worker = new Worker('', { eval: true })
      await once(worker, 'exit')
    })
    result.pageCopyMs = await timed(() => pageCopy(dbPath, copy, PAGES_PER_STEP))
    result.quickCheckMs = await timed(() => {
      const db = new Database(copy, { readonly: true, fileMustExist: true })
      db.pragma('quick_check')
      db.close()
    })
    result.sha256Ms = await timed(async () => {
      const hash = createHash('sha256')
      for await (const chunk of createReadStream(copy, { highWaterMark: 1 << 20 })) hash.update(chunk)
      hash.digest('hex')
    })
    result.fdatasyncMs = await timed(() => fsyncFile(copy, true))
    result.pluginStepsMs = result.pageCopyMs + result.quickCheckMs + result.sha256Ms + result.fdatasyncMs
    rmSync(copy, { force: true })

    // Alternatives, to see what a cheaper snapshot could save.
    result.pageCopyOneStepMs = await timed(() => pageCopy(dbPath, oneStep, ALL_PAGES))
    rmSync(oneStep, { force: true })
    result.copyFileMs = await timed(() => copyFileSync(dbPath, plain))
    result.copyFsyncMs = await timed(() => fsyncFile(plain, false))
    result.copyLimitMs = result.copyFileMs + result.copyFsyncMs
    return result
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
