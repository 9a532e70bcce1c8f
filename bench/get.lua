-- The scripted peer of PRESENCE.GET user (layout: see online.lua): the user's status with
-- devices past their deadline treated as gone. ARGV: user.
-- Reply: user, status, devices, last_seen, since (a flat array, as GET under RESP2).
local user = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local devices = redis.call('HGETALL', 'lua:dev:{' .. user .. '}')
local live = 0
for i = 2, #devices, 2 do
  if tonumber(devices[i]) > now then live = live + 1 end
end
local u = redis.call('HMGET', 'lua:user:{' .. user .. '}', 'last_seen', 'since')
local status = 'offline'
if live > 0 then status = 'online' end
return { 'user', user, 'status', status, 'devices', live, 'last_seen', u[1], 'since', u[2] }
