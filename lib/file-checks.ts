import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import Database from 'better-sqlite3'
import { TaskAborted, type ShouldStop } from './task'

/** sha256 and size of a file, read in 1 MiB chunks so that a stop request is honoured quickly. */
export async function hashFile (path: string, shouldStop: ShouldStop): Promise<{ sha256: string, bytes: number }> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    if (shouldStop()) throw new TaskAborted()
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  return { sha256: hash.digest('hex'), bytes }
}

/** Flushes a file's data to disk. */
export async function flushFile (path: string): Promise<void> {
  const file = await open(path, 'r+')
  try {
    await file.datasync()
  } finally {
    await file.close()
  }
}

/**
 * Runs `PRAGMA quick_check` or `integrity_check` on a database file that no one else writes and returns the
 * problems found (none when it is sound). SQLite errors such as SQLITE_CORRUPT or SQLITE_NOTADB propagate.
 */
export function checkDatabaseFile (path: string, pragma: 'quick_check' | 'integrity_check'): string[] {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const rows = db.pragma(pragma) as Array<Record<string, string>>
    return rows.map((row) => row[pragma]).filter((line) => line !== 'ok')
  } finally {
    db.close()
  }
}
