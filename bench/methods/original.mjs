// The original design, kept exactly as it was, to compare against: everything on the app's own connection and on
// the event loop. Known to be wrong: in WAL mode it misses commits still in the -wal file, and in rollback mode the
// fs open/close drops this process's POSIX locks on the database, so a writer can change the file mid-copy.
import { readFileSync, copyFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'

export const name = 'original'

export async function setup () {}

export async function backup ({ appDb, dbPath, scratchDir }) {
  const target = join(scratchDir, 'original-copy.sqlite')
  appDb.exec('BEGIN IMMEDIATE')
  try {
    const sha256 = createHash('sha256').update(readFileSync(dbPath)).digest('hex')
    copyFileSync(dbPath, target)
    return { path: target, sha256 }
  } finally {
    appDb.exec('COMMIT')
  }
}
