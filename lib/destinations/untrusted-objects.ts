// Objects read from offsite storage are not trusted: a record is bounded in size and checked in shape, and a
// download stops at the size its record gives (a gzip bomb cannot fill the disk).
import type { Readable } from 'node:stream'
import { Transform } from 'node:stream'
import type { BackupMetadata } from '../../types/index'
import { FST_SQLITE_BACKUP_VERIFY_FAILED } from '../errors'

/** The largest record read; a larger one counts as missing. */
export const MAX_RECORD_BYTES = 1024 * 1024

/** A stream's text, or undefined (and the stream destroyed) when it is longer than `limit` bytes. */
export async function readAtMost (body: Readable, limit: number, length: number | undefined): Promise<string | undefined> {
  if (length !== undefined && length > limit) {
    body.destroy()
    return undefined
  }
  const chunks: Buffer[] = []
  let size = 0
  // Leaving the loop early destroys the stream.
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > limit) return undefined
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** A record as JSON, if it is one of backup `id`, with the fields a reader relies on (its size above all). */
export function parseRecord (text: string, id: string): BackupMetadata | null {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return null
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null
  const { id: recorded, bytes, sha256, createdAt } = value as Record<string, unknown>
  const sound = recorded === id && Number.isSafeInteger(bytes) && (bytes as number) >= 0 && typeof sha256 === 'string' &&
    typeof createdAt === 'string' && !Number.isNaN(Date.parse(createdAt))
  return sound ? value as BackupMetadata : null
}

/** Passes at most `limit` bytes on; one more fails the stream, and with it the pipeline it is in. */
export function atMost (limit: number, id: string): Transform {
  let seen = 0
  return new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      seen += chunk.length
      if (seen > limit) callback(new FST_SQLITE_BACKUP_VERIFY_FAILED(id, `its download is larger than the ${limit} bytes its record says; it was stopped there`))
      else callback(null, chunk)
    }
  })
}
