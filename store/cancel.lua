-- Cancel a document (cancel.py `cancel`): the job of the stage that has not finished ends failed
-- with error "cancelled" (a stage not yet enqueued gets its record, ended so), the document
-- becomes `cancelled` and leaves the in-flight set, and the ending is announced, in one step.
-- The records are the truth: arq's keys live on the queue's server, which this script does not
-- touch. The reply says whether the job may be on arq's queue or running; the caller then adds
-- its arq id to arq's abort set there (best effort), so its worker stops it. Either way the
-- worker's own ending finds the job ended (end_job.lua) and publishes nothing: one terminal event.
-- The caller read the records first and names what it expects; if they changed since, the
-- reply is 'stale' and it reads again. Replies: {'ok', stage, job_id, abort (1 or 0)},
-- {'cancelled'} (it was already), {'ended', state} (done or failed: nothing to cancel),
-- {'missing'}, {'stale'}.
--!include docpulse/append_event.inc.lua
local document = KEYS[1]         -- hash: the document's record
local in_flight = KEYS[2]        -- set: the tenant's documents queued or running
local jobs_by_update = KEYS[3]   -- zset
local sequence = KEYS[4]         -- the tenant's event log (append_event)
local history = KEYS[5]
local document_id = ARGV[1]
local job_prefix = ARGV[2]       -- a job's key without its id (the tenant's, keys.py)
local stage = ARGV[3]            -- the stage the caller found unfinished
local job_id = ARGV[4]           -- its job, or for a stage with no job yet a new job id
local attempt = ARGV[5]          -- the job's attempt as read ('' for a stage with no job yet)
local updated_ms = ARGV[6]
local finished_at = ARGV[7]
local tenant_id = ARGV[8]
local channel = ARGV[9]          -- append_event's arguments ('' when there is no event)
local event = ARGV[10]
local max_length = ARGV[11]
local ttl_s = ARGV[12]
local new_epoch = ARGV[13]

local state = redis.call('HGET', document, 'state')
if not state then return {'missing'} end
if state == 'cancelled' then return {'cancelled'} end
if state == 'done' or state == 'failed' then return {'ended', state} end

local current, current_id
for _, name in ipairs({'parse', 'chunk', 'embed'}) do
  local id = redis.call('HGET', document, name .. '_job')
  if not id then current = name; break end
  if redis.call('HGET', job_prefix .. id, 'state') ~= 'done' then
    current, current_id = name, id
    break
  end
end
if current ~= stage then return {'stale'} end

local job
local abort = 0                  -- 1: the job may be on arq's queue or running
if current_id == nil then
  if attempt ~= '' then return {'stale'} end
  job = job_prefix .. job_id
  redis.call('HSET', document, stage .. '_job', job_id)
  redis.call('HSET', job, 'job_id', job_id, 'document_id', document_id, 'tenant_id', tenant_id,
    'stage', stage, 'progress', '0', 'attempt', '1', 'created_at', finished_at)
else
  job = job_prefix .. current_id
  local stored = redis.call('HMGET', job, 'state', 'attempt', 'ended')
  if current_id ~= job_id or not stored[1] or (stored[2] or '1') ~= attempt then
    return {'stale'}
  end
  if stored[3] then return {'ended', stored[1]} end
  redis.call('HDEL', job, 'note')
  if stored[1] == 'running' or stored[1] == 'retrying' or stored[1] == 'queued' then
    abort = 1
  end
end
redis.call('HSET', job, 'state', 'failed', 'error', 'cancelled', 'finished_at', finished_at,
  'updated_ms', updated_ms, 'ended', '1')
redis.call('ZADD', jobs_by_update, updated_ms, job_id)
redis.call('HSET', document, 'state', 'cancelled', 'error', stage .. ': cancelled')
redis.call('SREM', in_flight, document_id)
if event ~= '' then
  append_event(sequence, history, channel, event, max_length, ttl_s, new_epoch)
  redis.call('HSET', job, 'announced', '1')
end
return {'ok', stage, job_id, abort}
