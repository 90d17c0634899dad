# Evaluates a gitlab.rb the way the Linux package does (plain Ruby, settings
# auto-vivified on read) and prints what it sets, as JSON:
#   {"assignments": [{"key": "gitaly['configuration']", "value": ..., "symbols": [...]}],
#    "calls": ["external_url", ...]}
# "symbols" are the symbol keys of a hash value, at any depth.
require 'json'

class Setting
  def initialize(path, out)
    @path = path
    @out = out
  end

  def [](key)
    Setting.new("#{@path}['#{key}']", @out)
  end

  def []=(key, value)
    @out[:assignments] << { key: "#{@path}['#{key}']", value: value, symbols: Setting.symbols(value) }
  end

  def self.symbols(value)
    case value
    when Hash then value.flat_map { |k, v| (k.is_a?(Symbol) ? [k.to_s] : []) + symbols(v) }
    when Array then value.flat_map { |v| symbols(v) }
    else []
    end
  end
end

class GitlabRb < BasicObject
  def initialize(out)
    @out = out
  end

  def method_missing(name, *args)
    return ::Setting.new(name.to_s, @out) if args.empty?

    @out[:calls] << name.to_s
    nil
  end
end

out = { assignments: [], calls: [] }
GitlabRb.new(out).instance_eval(File.read(ARGV[0]), ARGV[0])
puts JSON.generate(out)
