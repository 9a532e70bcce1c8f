-- The scripted peer of PRESENCE.BULK user [user ...] (layout: see online.lua).
-- ARGV: users. Reply: one [user, status, last_seen, devices] row per user.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rows = {}
for n, user in ipairs(ARGV) do
  local devices = redis.call('HGETALL', 'lua:dev:{' .. user .. '}')
  local live = 0
  for i = 2, #devices, 2 do
    if tonumber(devices[i]) > now then live = live + 1 end
  end
  local status = 'offline'
  if live > 0 then status = 'online' end
  rows[n] = { user, status, redis.call('HGET', 'lua:user:{' .. user .. '}', 'last_seen'), live }
end
return rows
