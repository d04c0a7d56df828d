-- Delete a document (records.py `delete_document`): its data and its jobs' records, its entries
-- in the tenant's indexes, and its share of the caps (out of flight, its bytes no longer
-- stored), in one step: a script rather than a MULTI, which a Redis Cluster has not (the keys
-- are one tenant's, so one slot).
local in_flight = KEYS[1]        -- set: the tenant's documents queued or running
local sizes = KEYS[2]            -- hash: id -> bytes of the documents still stored
local total = KEYS[3]            -- string: the sum of sizes
local expiry = KEYS[4]           -- zset: id -> when RESULT_TTL expires it (ms)
local documents = KEYS[5]        -- zset: the tenant's document ids
local jobs_by_update = KEYS[6]   -- zset: the tenant's job ids
local DELETED_FIRST = 7          -- KEYS[7..]: the document's data keys and its jobs' records
local id = ARGV[1]               -- the document id
local JOBS_FIRST = 2             -- ARGV[2..]: its jobs' ids

redis.call('DEL', unpack(KEYS, DELETED_FIRST))
redis.call('ZREM', documents, id)
if #ARGV >= JOBS_FIRST then redis.call('ZREM', jobs_by_update, unpack(ARGV, JOBS_FIRST)) end
redis.call('SREM', in_flight, id)
redis.call('ZREM', expiry, id)
local size = redis.call('HGET', sizes, id)
if size then
  redis.call('HDEL', sizes, id)
  redis.call('DECRBY', total, size)
end
return 0
