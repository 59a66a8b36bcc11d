-- P1 for Fluent Bit: filter temp > 25.0 | eval temp_f = temp * 9.0 / 5.0 + 32.0
function p1(tag, ts, record)
  local t = tonumber(record["temp"])
  if t == nil or t <= 25.0 then
    return -1, ts, record
  end
  record["temp_f"] = t * 9.0 / 5.0 + 32.0
  return 2, ts, record
end
