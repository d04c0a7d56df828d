-- Update a job that has not ended (records.py `update_job`, `begin_job`), its document's fields
-- if given, and publish the event that announces the change, in one step. Returns {1}, or {0}
-- (changing nothing, publishing nothing) if the job had ended. Given the document and stage the
-- job must belong to, it also returns the record as it was before (HGETALL's list), and changes
-- nothing when the record is missing or belongs to another document or stage.
--!include docpulse/append_event.inc.lua
local job = KEYS[1]              -- hash: the job's record
local jobs_by_update = KEYS[2]   -- zset
local sequence = KEYS[3]         -- the tenant's event log (append_event)
local history = KEYS[4]
local document = KEYS[5]         -- hash, or absent: the document is not updated
local job_id = ARGV[1]
local updated_ms = ARGV[2]
local channel = ARGV[3]          -- append_event's arguments ('' when there is no event)
local event = ARGV[4]            -- the change's event (JSON without seq), or '': none
local max_length = ARGV[5]
local ttl_s = ARGV[6]
local new_epoch = ARGV[7]
local expect_document = ARGV[8]  -- '', or the document id the job must belong to
local expect_stage = ARGV[9]     -- and its stage
local set_items = tonumber(ARGV[10])     -- the job's field/value items to set from ARGV[12] on,
local removed_items = tonumber(ARGV[11]) -- then the names of its fields to remove, then the
local SET_FIRST = 12                     -- document's field/value items, to the end

local before = {}
if expect_document ~= '' then
  before = redis.call('HGETALL', job)
  local stored = redis.call('HMGET', job, 'document_id', 'stage')
  if stored[1] ~= expect_document or stored[2] ~= expect_stage then return {0, before} end
end
if redis.call('HEXISTS', job, 'ended') == 1 then return {0, before} end
local split = SET_FIRST - 1 + set_items
local removed_end = split + removed_items
redis.call('HSET', job, unpack(ARGV, SET_FIRST, split))
if removed_items > 0 then redis.call('HDEL', job, unpack(ARGV, split + 1, removed_end)) end
redis.call('ZADD', jobs_by_update, updated_ms, job_id)
if document and #ARGV > removed_end then
  redis.call('HSET', document, unpack(ARGV, removed_end + 1))
end
if event ~= '' then
  append_event(sequence, history, channel, event, max_length, ttl_s, new_epoch)
end
return {1, before}
