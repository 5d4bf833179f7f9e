import openai
from fakes import Reply, FakeToolCall, Fail

MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
    "gem": {"targets": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
}

def test_smoke(gateway, fake_openai, fake_anthropic):
    gw = gateway(models=MODELS)
    c = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)
    fake_anthropic.enqueue(Reply(text="Hello there"))
    r = c.responses.create(model="claude", input="Hi", instructions="Be brief")
    print(r.model_dump_json(indent=1))
    fake_anthropic.enqueue(Reply(text="Let me check", tool_calls=[FakeToolCall("", "get_weather", {"city": "Paris"})]))
    with c.responses.stream(model="claude", input="Hi", tools=[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{}}}]) as s:
        for ev in s:
            print(ev.type, ev.sequence_number)
        final = s.get_final_response()
    print(final.model_dump_json(indent=1))
    fake_anthropic.enqueue(Fail(500, message="boom", after_events=3))
    try:
        for ev in c.responses.create(model="claude", input="Hi", stream=True):
            print(ev.type)
    except openai.APIError as e:
        print("raised", type(e), e)
