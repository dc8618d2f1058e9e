# The heartbeat script from /work/shared/reference/keep-alive-article.txt ("Step 2: The Heartbeat Sidecar"),
# AS WRITTEN, for benchmarks: the baseline keepwarm's agent is compared with. The only change: MODEL_ID,
# OLLAMA_URL and INTERVAL can be set (argv: MODEL_ID [OLLAMA_URL [INTERVAL]], or the environment variables
# ARTICLE_MODEL_ID, ARTICLE_OLLAMA_URL, ARTICLE_INTERVAL) so a benchmark can point it at the emulator.
# Everything else is the article's: empty prompt, top-level "num_ctx": 1 (ignored by Ollama: the request
# structs have no such field, server/routes.go), a 5 s timeout (a cold load longer than that is aborted
# upstream) and a blind POST every 240 s.
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

# --- CONFIGURATION ---
MODEL_ID = "llama3:latest"  # Update this to your specific model tag
OLLAMA_URL = "http://127.0.0.1:11434/api/generate"
INTERVAL = 240  # 4 Minutes (Beats the 5m default timeout)

# (benchmark hook: the three settings above, nothing else)
MODEL_ID = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ARTICLE_MODEL_ID", MODEL_ID)
OLLAMA_URL = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("ARTICLE_OLLAMA_URL", OLLAMA_URL)
INTERVAL = float(sys.argv[3] if len(sys.argv) > 3 else os.environ.get("ARTICLE_INTERVAL", INTERVAL))


def send_heartbeat():
    payload = {
        "model": MODEL_ID,
        "keep_alive": -1,  # Force Infinity
        "prompt": "",  # Empty prompt = No generation cost
        "num_ctx": 1,  # Minimal context = No VRAM spike
    }

    data = json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(OLLAMA_URL, data=data, headers={"Content-Type": "application/json"})

    try:
        # 5-second timeout prevents script hang if server is down
        with urllib.request.urlopen(req, timeout=5) as response:
            if response.status == 200:
                print(f"[{datetime.now().strftime('%H:%M:%S')}] ❤️  Heartbeat sent to {MODEL_ID}")
                response.read()  # Cleanly close connection
            else:
                print(f"⚠️ Warning: Server returned {response.status}")
    except urllib.error.URLError as e:
        print(f"❌ Connection Error: {e.reason} (Check if Ollama is running)")
    except Exception as e:  # noqa: BLE001 - as written in the article
        print(f"❌ Error: {e}")


if __name__ == "__main__":
    print(f"Starting Production Heartbeat for {MODEL_ID}...")
    while True:
        send_heartbeat()
        time.sleep(INTERVAL)
