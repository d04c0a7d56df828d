-- The tenant's history after an entry id, read with its head and epoch in one step (history.py).
local sequence = KEYS[1]      -- hash: seq, epoch
local history = KEYS[2]       -- stream: one entry per event, id seq-0
local first_id = ARGV[1]      -- the first entry id to read ('+': none)
local count = ARGV[2]         -- at most this many entries
local ttl_s = ARGV[3]         -- seconds; 0: no expiry
local new_epoch = ARGV[4]     -- the epoch if the log has none yet (a reader that comes first
                              -- gets the epoch it resumes in)

if redis.call('HSETNX', sequence, 'epoch', new_epoch) == 1 and tonumber(ttl_s) > 0 then
  redis.call('EXPIRE', sequence, ttl_s)
end
local meta = redis.call('HMGET', sequence, 'seq', 'epoch')
local entries = redis.call('XRANGE', history, first_id, '+', 'COUNT', count)
return {meta[1] or '0', meta[2], entries}
