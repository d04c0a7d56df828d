-- End a job once (records.py `end_job`): its final fields, its document's if given, the stage's
-- output, the record of the next stage's job, and the event that announces the ending, in one
-- step, so the records, the data and the events never disagree (a crash leaves all of it or
-- none). A failed job, or the last stage done, takes its document out of flight. Returns {1,
-- the next stage's job record (HGETALL's list) or an empty list}, or {0} (changing nothing) if
-- the job had ended already.
--!include docpulse/append_event.inc.lua
--!include store/stage_job.inc.lua
local job = KEYS[1]              -- hash: the job's record
local jobs_by_update = KEYS[2]   -- zset
local in_flight = KEYS[3]        -- set: the tenant's documents queued or running
local sequence = KEYS[4]         -- the tenant's event log (append_event)
local history = KEYS[5]
local document = KEYS[6]         -- hash, or absent: the document is not updated
local OUTPUT_KEYS = 6            -- KEYS[7..]: the keys the outputs below write, in their order
local job_id = ARGV[1]
local updated_ms = ARGV[2]
local last_stage = ARGV[3]       -- the pipeline's last stage
local channel = ARGV[4]          -- append_event's arguments ('' when there is no event)
local event = ARGV[5]            -- the ending's event (JSON without seq), or '': none
local max_length = ARGV[6]
local ttl_s = ARGV[7]
local new_epoch = ARGV[8]
local job_items = tonumber(ARGV[9])     -- counts of what follows from ARGV[13] on: the job's
local doc_items = tonumber(ARGV[10])    -- field/value items, the document's, the outputs'
local output_items = tonumber(ARGV[11]) -- items (each: op, n, n values), and the next job's
local next_items = tonumber(ARGV[12])   -- (field, job prefix, updated ms, its field/value items
local FIRST = 13                        -- without its id), when the job ends done

if redis.call('HEXISTS', job, 'ended') == 1 then return {0} end
local job_end = FIRST - 1 + job_items
local doc_end = job_end + doc_items
local output_end = doc_end + output_items
redis.call('HDEL', job, 'note')
redis.call('HSET', job, 'ended', '1', unpack(ARGV, FIRST, job_end))
redis.call('ZADD', jobs_by_update, updated_ms, job_id)
if document and doc_items > 0 then
  redis.call('HSET', document, unpack(ARGV, job_end + 1, doc_end))
end
-- the stage's output: 'SET' or 'APPEND' one value, or 'LIST' (the list replaced by the values)
local at, key_index = doc_end + 1, OUTPUT_KEYS
while at <= output_end do
  local op, n = ARGV[at], tonumber(ARGV[at + 1])
  key_index = key_index + 1
  local key = KEYS[key_index]
  if op == 'SET' then
    redis.call('SET', key, ARGV[at + 2])
  elseif op == 'APPEND' then
    redis.call('APPEND', key, ARGV[at + 2])
  else
    redis.call('DEL', key)
    for from = at + 2, at + 1 + n, 1000 do  -- unpack takes a bounded number of values
      redis.call('RPUSH', key, unpack(ARGV, from, math.min(from + 999, at + 1 + n)))
    end
  end
  at = at + 2 + n
end
local stored = redis.call('HMGET', job, 'document_id', 'stage', 'state')
if stored[1] and (stored[3] == 'failed' or (stored[3] == 'done' and stored[2] == last_stage)) then
  redis.call('SREM', in_flight, stored[1])
end
local next_job = {}
if document and next_items > 0 and stored[3] == 'done' then
  local f = output_end + 1
  next_job = stage_job(document, jobs_by_update, ARGV[f], '', ARGV[f + 1], ARGV[f + 2],
                       f + 3, f - 1 + next_items) or {}
end
if event ~= '' then
  append_event(sequence, history, channel, event, max_length, ttl_s, new_epoch)
  redis.call('HSET', job, 'announced', '1')
end
return {1, next_job}
