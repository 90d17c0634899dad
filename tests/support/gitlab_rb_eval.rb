# Evaluates a gitlab.rb the way the Linux package's settings DSL does: every
# top-level name is a settings hash that grows on assignment and auto-vivifies
# on read, and a top-level name given arguments is a call (external_url ...).
# Prints, as JSON:
#   {"settings": {"gitlab_rails": {...}, ...},             the node attributes (the fakes read them)
#    "calls": {"external_url": "https://...", ...},         each call's argument(s)
#    "assignments": [{"key": "gitaly['configuration']", "value": ..., "symbols": [...]}]}
# "symbols" are the symbol keys of an assigned hash value, at any depth (the
# documented-settings check compares them with the release's template).
# One evaluator for every harness: support/boot.py, support/disk.py and the fakes of fakebin/.
require 'json'

ASSIGNMENTS = []

class Settings < Hash
  def initialize(path)
    @path = path
    super() { |hash, key| hash.store(key, Settings.new("#{@path}['#{key}']")) }
  end

  def []=(key, value)
    ASSIGNMENTS << { key: "#{@path}['#{key}']", value: value, symbols: Settings.symbols(value) }
    super
  end

  def self.symbols(value)
    case value
    when Hash then value.flat_map { |k, v| (k.is_a?(Symbol) ? [k.to_s] : []) + symbols(v) }
    when Array then value.flat_map { |v| symbols(v) }
    else []
    end
  end
end

# Plain Ruby around the settings, as in the package: Kernel's methods stay Kernel's.
class GitlabRb < BasicObject
  def initialize(settings, calls)
    @settings = settings
    @calls = calls
  end

  def method_missing(name, *args)
    return @settings[name.to_s] if args.empty?

    @calls[name.to_s] = args.length == 1 ? args.first : args
    nil
  end

  def respond_to_missing?(*)
    true
  end
end

settings = ::Hash.new { |hash, key| hash.store(key, Settings.new(key)) }
calls = {}
path = ARGV.fetch(0)
GitlabRb.new(settings, calls).instance_eval(File.read(path), path)
puts JSON.generate({ 'settings' => settings, 'calls' => calls, 'assignments' => ASSIGNMENTS })
