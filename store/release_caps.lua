-- A document is gone: out of flight, and its bytes no longer stored (caps.py `CapCounters.release`).
local in_flight = KEYS[1]        -- set: the tenant's documents queued or running
local sizes = KEYS[2]            -- hash: id -> bytes of the documents still stored
local total = KEYS[3]            -- string: the sum of sizes
local expiry = KEYS[4]           -- zset: id -> when RESULT_TTL expires it (ms)
local id = ARGV[1]               -- the document id

redis.call('SREM', in_flight, id)
redis.call('ZREM', expiry, id)
local size = redis.call('HGET', sizes, id)
if size then
  redis.call('HDEL', sizes, id)
  redis.call('DECRBY', total, size)
end
return 0
