-- Admit a document under its tenant's upload caps (caps.py). With a document id it is created
-- with its queued parse job, marked pending enqueue, in the same step (records.py
-- `create_document`): stored whole, or refused having stored nothing. arq's queue lives on
-- another server (it may): the caller enqueues the job there next and clears the mark, and a
-- worker's sweeper enqueues it if the caller could not (store/pending.py). Without one it only answers whether an upload of `size` bytes
-- would be admitted now (caps.py `CapCounters.check`, before the body is read), and counts nothing.
-- Returns 0 (admitted) or {cap, retry after s, limit}.

-- KEYS: the tenant's caps (TenantKeys.caps()), then, to create a document, its keys. The
-- records looked up by `doc_prefix` are the tenant's, under the same hash tag as the declared
-- keys: one slot.
local uploads = KEYS[1]          -- zset: admitted upload ids by time (the per-minute window)
local in_flight = KEYS[2]        -- set: ids of documents queued or running
local sizes = KEYS[3]            -- hash: id -> bytes of the documents still stored
local total = KEYS[4]            -- string: the sum of sizes
local expiry = KEYS[5]           -- zset: id -> when RESULT_TTL expires it (ms)
local swept = KEYS[6]            -- string: set for a while after in_flight was swept
local document = KEYS[7]         -- hash
local content_key = KEYS[8]      -- string
local documents = KEYS[9]        -- zset: the tenant's document ids
local job = KEYS[10]             -- hash: the parse job's record
local jobs_by_update = KEYS[11]  -- zset
local pending = KEYS[12]         -- zset: job ids not yet known to be on arq's queue, by ms

-- ARGV: the caps (Caps.args; 0 is no cap), the size, then, to create a document, the rest.
local per_minute = tonumber(ARGV[1])
local max_in_flight = tonumber(ARGV[2])
local max_bytes = tonumber(ARGV[3])
local doc_prefix = ARGV[4]
local size = tonumber(ARGV[5])   -- bytes of the upload
local id = ARGV[6] or ''         -- the document id (absent or '': only check)
local job_id = ARGV[7]
local job_updated_ms = ARGV[8]   -- also the job's score in `pending`
local content = ARGV[9]
local doc_items = tonumber(ARGV[10])  -- the document's field/value items from ARGV[11] on; then
local DOC_FIRST = 11                  -- the job's, to the end

local WINDOW_MS = 60000          -- uploads per minute: a sliding window
local IN_FLIGHT_RETRY_S = 5      -- Retry-After at the in-flight cap (a hint)
local STORAGE_RETRY_S = 60       -- Retry-After at the storage cap (only expiry frees bytes)
local SWEEP_EVERY_MS = 5000      -- the in-flight set is swept at most this often

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- documents RESULT_TTL expired are no longer stored
local function forget_expired(now)
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, gone_id in ipairs(gone) do
    local gone_size = redis.call('HGET', sizes, gone_id)
    if gone_size then
      redis.call('HDEL', sizes, gone_id)
      redis.call('DECRBY', total, gone_size)
    end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now) end
end

-- at the cap, drop ids whose document is gone or finished (a lost removal must not lock the
-- tenant out), at most once per sweep interval
local function count_in_flight()
  local n = redis.call('SCARD', in_flight)
  if n < max_in_flight then return n end
  if not redis.call('SET', swept, '1', 'PX', SWEEP_EVERY_MS, 'NX') then return n end
  for _, member in ipairs(redis.call('SMEMBERS', in_flight)) do
    local state = redis.call('HGET', doc_prefix .. member, 'state')
    if not state or state == 'done' or state == 'failed' then
      redis.call('SREM', in_flight, member)
    end
  end
  return redis.call('SCARD', in_flight)
end

-- nil when an upload of `size` bytes may be admitted now, else {cap, retry after s, limit}
local function refusal(now)
  redis.call('ZREMRANGEBYSCORE', uploads, '-inf', now - WINDOW_MS)
  forget_expired(now)
  if per_minute > 0 then
    local n = redis.call('ZCARD', uploads)
    if n >= per_minute then
      local i = n - per_minute  -- when this one leaves the window, one more may come
      local frees = redis.call('ZRANGE', uploads, i, i, 'WITHSCORES')
      local wait = math.ceil((tonumber(frees[2]) + WINDOW_MS - now) / 1000)
      return {'uploads_per_minute', math.max(1, wait), per_minute}
    end
  end
  if max_in_flight > 0 and count_in_flight() >= max_in_flight then
    return {'in_flight', IN_FLIGHT_RETRY_S, max_in_flight}
  end
  local stored = tonumber(redis.call('GET', total) or '0')
  if max_bytes > 0 and stored + size > max_bytes then
    return {'stored_bytes', STORAGE_RETRY_S, max_bytes}
  end
  return nil
end

if id == '' then
  return refusal(now_ms()) or 0
end

-- Creating. Redis does not roll a script back when a command in it fails: every write before the
-- failing one stays. So everything that could make a write fail (a key of the wrong type, a
-- counter that is not a number) is checked before the first write,
-- and a refused precondition is an error reply having written nothing. (Under maxmemory, Redis
-- refuses only a script's first write; after that it lets the script finish.) The only writes
-- that may come before a failure are refusal()'s housekeeping (forgetting what expired, the
-- sweep of flight), which changes nothing a client sees.

local function wrong_type(key, ...)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return false end
  for _, ok in ipairs({...}) do if t == ok then return false end end
  return true
end

-- why this document cannot be created and enqueued whole, or nil
local function precondition()
  local checks = {
    {documents, 'zset'}, {job, 'hash'}, {jobs_by_update, 'zset'}, {uploads, 'zset'},
    {in_flight, 'set'}, {sizes, 'hash'}, {total, 'string'}, {expiry, 'zset'}, {pending, 'zset'},
  }
  for _, c in ipairs(checks) do
    if wrong_type(c[1], c[2]) then return 'wrong type of key ' .. c[1] end
  end
  local sum = redis.call('GET', total)
  if sum and not string.match(sum, '^%-?%d+$') then return 'not an integer: ' .. total end
  return nil
end

-- sent again after its reply was lost (the client retries on a connection error): it ran
if redis.call('EXISTS', document) == 1 then return 0 end
local bad = precondition()
if bad then return redis.error_reply('docpulse: ' .. bad) end
local now = now_ms()
local no = refusal(now)
if no then return no end
local split = DOC_FIRST - 1 + doc_items
redis.call('HSET', document, unpack(ARGV, DOC_FIRST, split))
redis.call('SET', content_key, content)
redis.call('ZADD', documents, id, id)
redis.call('HSET', job, unpack(ARGV, split + 1))
redis.call('ZADD', jobs_by_update, job_updated_ms, job_id)
redis.call('ZADD', pending, job_updated_ms, job_id)
-- count the admitted document in every cap
redis.call('ZADD', uploads, now, id)
redis.call('PEXPIRE', uploads, WINDOW_MS)
redis.call('SADD', in_flight, id)
redis.call('HSET', sizes, id, size)
redis.call('INCRBY', total, size)
return 0
