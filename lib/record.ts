// The record stored beside each backup (`<id>.json`), and the checksum that every reader checks a backup against.
import type { BackupMetadata } from '../types/index'

/** What a backup's bytes must hash to: sha256 and size of the uncompressed database file. */
export interface Checksum {
  sha256: string
  bytes: number
}

/** The checksum a backup is checked against, or null when its record is missing (then nothing can be checked). */
export function checksumOf (metadata: BackupMetadata | null): Checksum | null {
  return metadata ? { sha256: metadata.sha256, bytes: metadata.bytes } : null
}

/** The record as stored in a destination that keeps the file as it is. */
export function uncompressedRecord (metadata: BackupMetadata): BackupMetadata {
  return { ...metadata, file: `${metadata.id}.sqlite`, compression: 'none', storedBytes: metadata.bytes }
}
