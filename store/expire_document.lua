-- Expire a document's data, and note when its bytes leave the stored sum (caps.py).
local expiry = KEYS[1]           -- zset: id -> when RESULT_TTL expires it (ms)
local DATA_FIRST = 2             -- KEYS[2..]: the document's data keys
local ttl_s = tonumber(ARGV[1])
local id = ARGV[2]               -- the document id

local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl_s * 1000
for i = DATA_FIRST, #KEYS do redis.call('PEXPIREAT', KEYS[i], at) end
redis.call('ZADD', expiry, at, id)
return 0
