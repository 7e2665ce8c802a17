// Where a committed transaction sits in the database's write-ahead log. SQLite's WAL file is reused: a checkpoint
// that copied every frame into the database lets the next writer start the file over, with a new header
// (checkpoint sequence + 1, salt-1 + 1, a random salt-2). An incarnation of the WAL is one such header and the
// frames written under it; a position names one commit frame in one incarnation.

export interface WalPosition {
  /** The WAL header's checkpoint sequence number. */
  checkpointSeq: number
  salt1: number
  salt2: number
  /** Frames of this incarnation up to and including the commit frame named (1-based); 0 is the start, before any frame. */
  frame: number
  /** The running checksum after that frame (the header's own checksum at frame 0). */
  checksum: [number, number]
}

/** Whether two positions are in the same incarnation of the WAL. */
export function sameIncarnation (a: WalPosition, b: WalPosition): boolean {
  return a.checkpointSeq === b.checkpointSeq && a.salt1 === b.salt1 && a.salt2 === b.salt2
}
