// How many frames a connection's commits appended to the WAL, read from the wal-index header at the start of the
// -shm file (SQLite's WalIndexHdr, native byte order): isInit (u8) at 12, szPage (u16) at 14, mxFrame (u32) at 16,
// the index of the last valid frame, and the WAL's salts (2 × u32) at 32, which change whenever the WAL starts over.
// Read right after a commit of this process's only writing connection, the header is the one that commit wrote.
import { openSync, readSync, closeSync } from 'node:fs'
import { endianness } from 'node:os'

export function openWalIndex (dbPath, pageSize) {
  const fd = openSync(`${dbPath}-shm`, 'r')
  const header = Buffer.alloc(48)
  const u32 = endianness() === 'LE' ? (offset) => header.readUInt32LE(offset) : (offset) => header.readUInt32BE(offset)
  const u16 = endianness() === 'LE' ? (offset) => header.readUInt16LE(offset) : (offset) => header.readUInt16BE(offset)
  const read = () => {
    if (readSync(fd, header, 0, 48, 0) !== 48) throw new Error('the -shm file is shorter than its header')
    const size = u16(14)
    const mxFrame = u32(16)
    // An empty WAL (nothing written since it started) has no page size yet.
    if (header[12] !== 1 || (mxFrame > 0 && (size === 1 ? 65536 : size) !== pageSize)) throw new Error(`unexpected wal-index header (isInit ${header[12]}, szPage ${size}, page_size ${pageSize})`)
    return { mxFrame, salt: `${u32(32)}:${u32(36)}` }
  }
  let last = read()
  return {
    /** Frames appended since the last call; when the WAL started over meanwhile, counted from its start. */
    framesSince () {
      const now = read()
      // A WAL with no frames yet gets new salts at its first write: not a restart of one in use.
      const restarted = now.salt !== last.salt && last.mxFrame > 0
      const frames = now.salt !== last.salt ? now.mxFrame : now.mxFrame - last.mxFrame
      last = now
      return { frames, restarted }
    },
    close () {
      closeSync(fd)
    }
  }
}
