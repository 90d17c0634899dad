# Evaluates a gitlab.rb the way the Linux package's settings DSL does (every
# top-level name is a settings hash that grows on assignment) and prints the
# settings as JSON: the fake gitlab-ctl's "node attributes".
require 'json'

class Settings < Hash
  def initialize
    super { |hash, key| hash[key] = Settings.new }
  end
end

SETTINGS = Hash.new { |hash, key| hash[key] = Settings.new }
CALLS = {}

def method_missing(name, *args)
  return SETTINGS[name.to_s] if args.empty?
  CALLS[name.to_s] = args.length == 1 ? args.first : args
  nil
end

def respond_to_missing?(*)
  true
end

path = ARGV.fetch(0)
eval(File.read(path), binding, path) # rubocop:disable Security/Eval
puts JSON.pretty_generate({ 'settings' => SETTINGS, 'calls' => CALLS })
