"""Transfer strategies: the registry of names, the recipe that applies one to a
source body, and the advisor that picks one."""
